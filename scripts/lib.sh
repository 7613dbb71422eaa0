# shellcheck shell=bash
# Small helpers shared by the scripts in this folder. Source it; do not run it.

sw_log() { printf '[services] %s\n' "$*" >&2; }
sw_warn() { printf '[services] warning: %s\n' "$*" >&2; }
sw_die() {
    printf '[services] error: %s\n' "$*" >&2
    exit 1
}

# sw_have CMD: true when CMD is on PATH.
sw_have() { command -v "$1" >/dev/null 2>&1; }

# sw_sha256 FILE: print the sha256 of FILE (empty when it cannot be read).
sw_sha256() {
    if sw_have sha256sum; then
        sha256sum "$1" 2>/dev/null | cut -d' ' -f1
    else
        python3 -c 'import hashlib,sys; print(hashlib.sha256(open(sys.argv[1],"rb").read()).hexdigest())' "$1" 2>/dev/null
    fi
}

# sw_port_open HOST PORT: true when a TCP connection to HOST:PORT succeeds (1 s timeout).
sw_port_open() {
    local host=$1 port=$2
    if sw_have timeout; then
        # shellcheck disable=SC2016 # $1 and $2 expand in the child shell
        timeout 1 bash -c 'exec 3<>"/dev/tcp/$1/$2"' _ "$host" "$port" 2>/dev/null
    else
        python3 - "$host" "$port" 2>/dev/null <<'EOF'
import socket, sys
socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=1).close()
EOF
    fi
}

# sw_wait_port HOST PORT SECONDS [PID]: poll until HOST:PORT accepts connections.
# Fails early when PID is given and that process has exited.
sw_wait_port() {
    local host=$1 port=$2 secs=$3 pid=${4:-}
    local deadline=$((SECONDS + secs))
    while :; do
        sw_port_open "$host" "$port" && return 0
        if [[ -n $pid ]] && ! kill -0 "$pid" 2>/dev/null; then
            return 2
        fi
        ((SECONDS >= deadline)) && return 1
        sleep 0.1
    done
}

# sw_pid_alive PIDFILE NAME: print the pid from PIDFILE when that process is alive
# and its command line contains the text NAME (guards against a recycled pid).
sw_pid_alive() {
    local pidfile=$1 name=$2 pid
    [[ -r $pidfile ]] || return 1
    pid=$(<"$pidfile")
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    kill -0 "$pid" 2>/dev/null || return 1
    if [[ -r /proc/$pid/cmdline ]]; then
        tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "$name" || return 1
    fi
    printf '%s\n' "$pid"
}

# sw_exec_clean CMD...: exec CMD with every file descriptor above 2 closed, so a daemon it starts
# keeps no lock file or caller's pipe open. Call it in a subshell: ( sw_exec_clean cmd ... ) &
sw_exec_clean() {
    local fd
    for fd in /proc/self/fd/*; do
        fd=${fd##*/}
        [[ $fd =~ ^[0-9]+$ ]] && ((fd > 2)) && eval "exec $fd>&-" 2>/dev/null
    done
    exec "$@"
}

# sw_tail_log FILE [N]: print the last N lines (default 20) of FILE to stderr.
sw_tail_log() {
    local file=$1 n=${2:-20}
    if [[ -s $file ]]; then
        printf '[services] --- last %s lines of %s ---\n' "$n" "$file" >&2
        tail -n "$n" "$file" >&2
        printf '[services] --- end of %s ---\n' "$file" >&2
    else
        printf '[services] (log %s is empty or missing)\n' "$file" >&2
    fi
}
