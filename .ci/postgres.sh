#!/usr/bin/env bash
# Makes a PostgreSQL server and the psycopg2 driver available for tests/test_paropt.py (its
# shared-study test starts a throwaway cluster of its own on 127.0.0.1 and stops it again).
# Idempotent and quiet: does nothing when both are there; prints the log only if a step fails.
# Needs root (apt-get) on Debian/Ubuntu when the server is missing.
set -euo pipefail

log=$(mktemp)
trap 'rm -f "$log"' EXIT
quietly() {
    if ! "$@" >"$log" 2>&1; then
        echo "postgres.sh: '$*' failed:" >&2
        cat "$log" >&2
        exit 1
    fi
}

if ! compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null && ! command -v initdb >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    quietly apt-get update -q
    quietly apt-get install -y -q --no-install-recommends postgresql
fi

if ! python -c "import psycopg2" >/dev/null 2>&1; then
    PIP_ROOT_USER_ACTION=ignore quietly python -m pip install -q --disable-pip-version-check "psycopg2-binary>=2.9"
fi
