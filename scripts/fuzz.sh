#!/usr/bin/env bash
# Runs every native Go fuzz target in the module for FUZZTIME each (default 10s; a count such as
# 3000x bounds executions instead of time), one at a time.
# `make test` already replays each target's committed seed corpus; this explores beyond it.
# Usage: scripts/fuzz.sh [fuzztime]   e.g. scripts/fuzz.sh 10m for a campaign.
# New inputs that fail are written under the package's testdata/fuzz/<Target>/; commit them with the fix.
set -euo pipefail
cd "$(dirname "$0")/.."
fuzztime=${1:-${FUZZTIME:-10s}}
status=0
for pkg in $(go list ./...); do
  dir=$(go list -f '{{.Dir}}' "$pkg")
  targets=$(grep -ho '^func Fuzz[A-Za-z0-9_]*' "$dir"/*_test.go 2>/dev/null | sed 's/^func //' | sort -u || true)
  for t in $targets; do
    echo "== fuzz $pkg $t for $fuzztime"
    start=$(date +%s)
    if ! go test -run '^$' -fuzz "^${t}\$" -fuzztime "$fuzztime" -parallel 2 "$pkg" 2>&1 | tail -n 5; then
      status=1
    fi
    echo "   took $(( $(date +%s) - start ))s"
  done
done
exit $status
