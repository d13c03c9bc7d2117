#!/usr/bin/env bash
# The test suite on a sanitizer build of the addon (issue 5, point 1):
#   npm run test:asan               # AddressSanitizer + UBSan: the suites that drive the addon (CI)
#   npm run test:asan -- --project local test/core/oracle.test.ts    # vitest arguments pick others
#   npm run test:tsan               # ThreadSanitizer: scripts/tsan-completion.cjs [rounds]
# Builds the addon (cmake-js, offline) when it is missing or older than native/, loads it through
# THREEFS_CLIENT_ADDON with the sanitizer's runtime preloaded (scripts/sanitize-env.sh), and
# writes the run's outcome to build-test/reliability/suite.<kind>.json for RELIABILITY.md.
set -euo pipefail
cd "$(dirname "$0")/.."
kind="${1:-asan}"
[ $# -gt 0 ] && shift
addon="build-$kind/Debug/threefs_client.node"
if [ ! -f "$addon" ] || [ -n "$(find native CMakeLists.txt -newer "$addon" -print -quit)" ]; then
  npm run "build:$kind"
fi
npx tsc -p tsconfig.json
eval "$(bash scripts/sanitize-env.sh "$kind")"
# By default, the suites that drive the addon, on every engine: not the packaging, doctor, bench,
# house and type tests, nor the crash tests (they kill processes; a sanitizer adds nothing there),
# which the plain `npm test` runs. The plain run's soak is a million ops and its fuzz 600 rounds a
# part; here 200,000 and 200, and the leak tests' cycles a tenth (test/helpers/waits.ts).
partial=''
if [ $# -gt 0 ]; then partial=-partial; fi
if [ "$kind" = asan ] && [ $# -eq 0 ]; then
  set -- test/core/ test/datasets/ test/hf3fs/ test/kvcache/kvcache.test.ts \
    test/reliability/{big-batches,faults,fuzz,rough-edges,soak}.test.ts
  export THREEFS_SOAK_OPS="${THREEFS_SOAK_OPS:-200000}" THREEFS_FUZZ_ITERATIONS="${THREEFS_FUZZ_ITERATIONS:-200}"
fi
start=$(date +%s)
set +e
if [ "$kind" = tsan ]; then
  # vitest's own process does not survive a preloaded TSan runtime: a plain node driver.
  node scripts/tsan-completion.cjs "$@"
else
  npx vitest run "$@"
fi
rc=$?
set -e
mkdir -p build-test/reliability
printf '{ "kind": "%s", "exitCode": %d, "seconds": %d, "args": "%s", "at": "%s" }\n' \
  "$kind" "$rc" "$(( $(date +%s) - start ))" "$*" "$(date -u +%FT%TZ)" > "build-test/reliability/suite.$kind$([ "$kind" = asan ] && echo "$partial").json"
exit $rc
