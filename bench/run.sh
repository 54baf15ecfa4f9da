#!/usr/bin/env bash
# Sets up and runs the whole benchmark from a fresh clone: `make bench` calls this.
# Installs the origin and the peer (Debian: nginx + its echo module, aria2) when missing, then the venv.
set -euo pipefail
cd "$(dirname "$0")/.."
need=()
command -v nginx >/dev/null || need+=(nginx)
[ -e /usr/lib/nginx/modules/ngx_http_echo_module.so ] || need+=(libnginx-mod-http-echo)
command -v aria2c >/dev/null || need+=(aria2)
if [ ${#need[@]} -gt 0 ]; then
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    echo "bench: installing ${need[*]} (apt-get)"
    $SUDO apt-get update -q
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${need[@]}"
fi
[ -x .venv/bin/python ] || make .venv/.dev
exec .venv/bin/python -m bench.run "$@"
