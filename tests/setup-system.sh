#!/usr/bin/env bash
# System packages the test suite needs and pip cannot install: PostgreSQL's server binaries.
# Installed with apt-get when they are missing and apt is there (as root, or with sudo -n).
set -euo pipefail

have_postgres() {
    compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || command -v initdb >/dev/null
}

if have_postgres; then
    exit 0
fi
if ! command -v apt-get >/dev/null; then
    echo "tests/setup-system.sh: no apt-get here; install PostgreSQL's server yourself" \
        "or its tests are skipped" >&2
    exit 0
fi
if [ "$(id -u)" -eq 0 ]; then
    as_root=()
elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
    as_root=(sudo -n)
else
    echo "tests/setup-system.sh: not root: run 'apt-get install -y postgresql' as root," \
        "or PostgreSQL's tests are skipped" >&2
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
"${as_root[@]}" apt-get update -qq
"${as_root[@]}" apt-get install -y -qq postgresql >/dev/null
have_postgres
