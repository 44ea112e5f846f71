#!/usr/bin/env bash
# Installs vae-bench with its dev tools, at the exact versions of constraints.txt, and Debian's
# postgresql (server binaries for the scale-out tests, which start their own server) when it is
# missing and apt-get is usable.
set -euo pipefail
cd "$(dirname "$0")"
if ! ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1; then
    if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
    else
        echo "note: no PostgreSQL server found; the scale-out tests need one (apt-get install postgresql)" >&2
    fi
fi
python3 -m pip install --quiet --disable-pip-version-check -c constraints.txt -e ".[dev]"
