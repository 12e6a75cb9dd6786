#!/usr/bin/env bash
# Make PostgreSQL server binaries available for tests/test_tune.py (which starts its own throwaway
# server with initdb + pg_ctl in a temp dir). Installs the Debian package only when none is found.
set -euo pipefail
if compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || command -v initdb >/dev/null; then
  echo "postgresql: $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | tail -1 || command -v initdb)"
  exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends postgresql >/dev/null
# the Debian package may start a cluster of its own; the tests do not need it
if command -v pg_lsclusters >/dev/null; then
  pg_lsclusters -h | while read -r ver name _; do $SUDO pg_ctlcluster "$ver" "$name" stop || true; done
fi
echo "postgresql: $(ls -d /usr/lib/postgresql/*/bin | tail -1)"
