#!/usr/bin/env bash
# Makes sure a headless Chromium is there for the `sink report` test (sink/tests/report.rs) and
# prints its path. Uses $CHROMIUM, /usr/bin/chromium or `chromium` on PATH when one exists;
# otherwise installs Debian's `chromium` package (as root, with apt-get) and a small font, so
# that the screenshot has text. Quiet and idempotent: a second run only prints the path.
set -euo pipefail

say() { printf '[chromium] %s\n' "$*" >&2; }

found() {
    local candidate
    for candidate in "${CHROMIUM:-}" /usr/bin/chromium "$(command -v chromium 2>/dev/null || true)"; do
        if [ -n "$candidate" ] && [ -x "$candidate" ]; then
            printf '%s\n' "$candidate"
            return 0
        fi
    done
    return 1
}

if path=$(found); then
    printf '%s\n' "$path"
    exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
    say "error: no chromium found and no apt-get to install it; install Chromium and set CHROMIUM=/path/to/it"
    exit 1
fi
if [ "$(id -u)" -ne 0 ]; then
    say "error: /usr/bin/chromium is missing and installing it needs root: sudo $0"
    exit 1
fi

say "installing Debian's chromium package (a few minutes the first time)"
export DEBIAN_FRONTEND=noninteractive
log=$(mktemp)
trap 'rm -f "$log"' EXIT
install() {
    apt-get install -y -q --no-install-recommends chromium fonts-dejavu-core >"$log" 2>&1
}
# The package lists may be missing or stale on a fresh machine: refresh them once and retry.
if ! install; then
    if ! apt-get update -q >"$log" 2>&1 || ! install; then
        cat "$log" >&2
        say "error: apt-get could not install chromium"
        exit 1
    fi
fi

if ! path=$(found); then
    say "error: the chromium package is installed but /usr/bin/chromium is not executable"
    exit 1
fi
say "installed $("$path" --version 2>/dev/null || echo chromium)"
printf '%s\n' "$path"
