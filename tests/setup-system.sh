#!/usr/bin/env bash
# System packages the test suite needs and pip cannot install: PostgreSQL's server binaries,
# and Chromium with its WebDriver for the browser tests of the web pages. Installed with
# apt-get when they are missing and apt is there (as root, or with sudo -n).
set -euo pipefail

have_postgres() {
    compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || command -v initdb >/dev/null
}

have_chromium() {
    [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]
}

missing=()
have_postgres || missing+=(postgresql)
have_chromium || missing+=(chromium chromium-driver)
if [ ${#missing[@]} -eq 0 ]; then
    exit 0
fi
if ! command -v apt-get >/dev/null; then
    echo "tests/setup-system.sh: no apt-get here; install ${missing[*]} yourself" \
        "or their tests are skipped" >&2
    exit 0
fi
if [ "$(id -u)" -eq 0 ]; then
    as_root=()
elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
    as_root=(sudo -n)
else
    echo "tests/setup-system.sh: not root: run 'apt-get install -y ${missing[*]}' as root," \
        "or their tests are skipped" >&2
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
"${as_root[@]}" apt-get update -qq
"${as_root[@]}" apt-get install -y -qq "${missing[@]}" >/dev/null
have_postgres && have_chromium
