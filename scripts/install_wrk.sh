#!/usr/bin/env bash
# Install wrk, the HTTP load generator `semrouter bench overhead` drives (Debian package `wrk`),
# if it is missing. Idempotent.
set -euo pipefail
command -v wrk >/dev/null && exit 0
SUDO=()
[ "$(id -u)" -eq 0 ] || SUDO=(sudo)
"${SUDO[@]}" apt-get update -qq
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null
command -v wrk
