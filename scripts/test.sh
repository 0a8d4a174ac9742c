#!/usr/bin/env bash
# Installs everything (scripts/setup.sh) and runs the whole test suite: typecheck, then vitest.
# Ends with the line "N passed, N failed, N skipped".
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh
npx tsc -p tsconfig.json --noEmit

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
rc=0
npx vitest run --reporter=default --reporter=json --outputFile.json="$out/results.json" "$@" || rc=$?
if [ -f "$out/results.json" ]; then
  node -e '
    const r = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
    const skipped = (r.numPendingTests ?? 0) + (r.numTodoTests ?? 0);
    console.log(`${r.numPassedTests} passed, ${r.numFailedTests} failed, ${skipped} skipped`);
  ' "$out/results.json"
fi
exit "$rc"
