#!/usr/bin/env bash
# Makes sure the C libraries the build links are there: OpenSSL's headers (TLS to PostgreSQL,
# and librdkafka's TLS/SASL) and pkg-config, from Debian's packages.
set -euo pipefail
if pkg-config --exists openssl 2>/dev/null; then
    exit 0
fi
echo "[build-deps] installing libssl-dev and pkg-config (Debian packages)" >&2
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
$SUDO apt-get update -qq >&2
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq libssl-dev pkg-config >&2
