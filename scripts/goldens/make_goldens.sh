#!/usr/bin/env bash
# Regenerates the Evidently golden values under tests/golden/ (and, with --bench, the Evidently timings).
#
#   scripts/goldens/make_goldens.sh                 # daily, hourly and 1d/1h sliding February cases + synthetic cases
#                                                   # + the daily outlier shares
#   scripts/goldens/make_goldens.sh --only daily    # or: --only windows (hourly + sliding), --only synthetic,
#                                                   # --only outliers (outlier_goldens.py, NumPy only)
#                                                   # --only performance (performance_goldens.py, scikit-learn)
#                                                   # --only contributions (contribution_goldens.py, NumPy/SciPy)
#                                                   # --only segments (segment_goldens.py: the daily cases
#                                                   #   per pickup borough)
#   scripts/goldens/make_goldens.sh --bench         # goldens, then scripts/goldens/evidently_bench.py
#   scripts/goldens/make_goldens.sh --bench-only    # only the timings
#   scripts/goldens/make_goldens.sh -- --reference other.parquet --model other.json
#       (arguments after -- go to evidently_goldens.py, outlier_goldens.py and evidently_bench.py; the JSON still records the repo paths)
#   scripts/goldens/make_goldens.sh --workers 4     # processes for the hourly/sliding windows (default 2)
#
# Inputs (repo-relative): data/reference.parquet and models/trip-duration-linear.json (from `scorer train`),
# data/green_tripdata_2022-02.parquet.
# The Python environment is a venv at ${STREAMWATCH_CACHE:-$HOME/.cache/streamwatch}/evidently-venv, built from
# scripts/goldens/requirements.txt and rebuilt whenever that file changes. Set PYTHON to choose the interpreter
# (default: python3.11, else python3); the goldens were produced with Python 3.11.
set -euo pipefail

self="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/$(basename "${BASH_SOURCE[0]}")"
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

run_goldens=1
only=all
run_bench=0
gen_args=()
extra_args=()
while [ $# -gt 0 ]; do
    case "$1" in
        --bench) run_bench=1 ;;
        --bench-only) run_bench=1; run_goldens=0 ;;
        --only) only="$2"; gen_args+=("--only" "$2"); shift ;;
        --workers) gen_args+=("--workers" "$2"); shift ;;
        --) shift; extra_args+=("$@"); break ;;
        -h|--help) sed -n '2,20p' "$self"; exit 0 ;;
        *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done

cache="${STREAMWATCH_CACHE:-$HOME/.cache/streamwatch}"
venv="$cache/evidently-venv"
req="scripts/goldens/requirements.txt"
stamp="$venv/.requirements.sha256"

if [ -z "${PYTHON:-}" ]; then
    if command -v python3.11 >/dev/null 2>&1; then PYTHON=python3.11; else PYTHON=python3; fi
fi

want="$(sha256sum "$req" | cut -d' ' -f1)"
if [ ! -x "$venv/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null || true)" != "$want" ]; then
    echo "building $venv from $req with $PYTHON" >&2
    rm -rf "$venv"
    mkdir -p "$cache"
    "$PYTHON" -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps -r "$req"
    "$venv/bin/python" -m pip check >&2
    echo "$want" > "$stamp"
fi

pyver="$("$venv/bin/python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
if [ "$pyver" != "3.11" ]; then
    echo "warning: the venv runs Python $pyver; the committed goldens were produced with Python 3.11" >&2
fi

for f in data/green_tripdata_2022-02.parquet; do
    [ -f "$f" ] || { echo "missing input $f" >&2; exit 1; }
done

if [ "$run_goldens" = 1 ] && [ "$only" != outliers ] && [ "$only" != performance ] && [ "$only" != contributions ] \
    && [ "$only" != segments ]; then
    "$venv/bin/python" scripts/goldens/evidently_goldens.py ${gen_args[@]+"${gen_args[@]}"} ${extra_args[@]+"${extra_args[@]}"}
fi
if [ "$run_goldens" = 1 ] && { [ "$only" = all ] || [ "$only" = outliers ]; }; then
    "$venv/bin/python" scripts/goldens/outlier_goldens.py ${extra_args[@]+"${extra_args[@]}"}
fi
if [ "$run_goldens" = 1 ] && { [ "$only" = all ] || [ "$only" = performance ]; }; then
    "$venv/bin/python" scripts/goldens/performance_goldens.py
fi
if [ "$run_goldens" = 1 ] && { [ "$only" = all ] || [ "$only" = contributions ]; }; then
    "$venv/bin/python" scripts/goldens/contribution_goldens.py
fi
if [ "$run_goldens" = 1 ] && { [ "$only" = all ] || [ "$only" = segments ]; }; then
    "$venv/bin/python" scripts/goldens/segment_goldens.py
fi
if [ "$run_bench" = 1 ]; then
    "$venv/bin/python" scripts/goldens/evidently_bench.py ${extra_args[@]+"${extra_args[@]}"}
fi
