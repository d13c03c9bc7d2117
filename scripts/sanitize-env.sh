#!/usr/bin/env bash
# Prints (as `export` lines) the environment that runs node with a sanitizer build of the addon:
#   eval "$(bash scripts/sanitize-env.sh asan)"   # or tsan
# node itself is not instrumented, so the sanitizer's runtime is preloaded; THREEFS_CLIENT_ADDON
# makes lib/core/native.ts load the sanitizer build instead of build/Release.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
kind="${1:-asan}"
case "$kind" in
  asan)
    addon="$root/build-asan/Debug/threefs_client.node"
    preload="$(gcc -print-file-name=libasan.so):$(gcc -print-file-name=libubsan.so)"
    # detect_leaks=0: V8 and node keep allocations until exit that LeakSanitizer would report (the
    # soak and cleanup tests measure the library's own leaks instead); quarantine_size_mb=32: freed
    # memory held back to catch use after free, small enough for the RSS checks. abort_on_error: a report
    # kills the test process, so vitest fails the file. verify_asan_link_order=0: children that
    # are not node (gcc, the stand-in's harness) inherit the preload too.
    echo "export ASAN_OPTIONS='detect_leaks=0:quarantine_size_mb=32:abort_on_error=1:halt_on_error=1:verify_asan_link_order=0:detect_stack_use_after_return=0:allocator_may_return_null=1:handle_segv=1:print_summary=1'"
    echo "export UBSAN_OPTIONS='halt_on_error=1:abort_on_error=1:print_stacktrace=1'"
    ;;
  tsan)
    addon="$root/build-tsan/Debug/threefs_client.node"
    preload="$(gcc -print-file-name=libtsan.so)"
    # Reports go to stderr (vitest shows them); a process that reported exits with 66 at its end.
    echo "export TSAN_OPTIONS='report_signal_unsafe=0:halt_on_error=0:exitcode=66:second_deadlock_stack=1:suppressions=$root/scripts/tsan.supp'"
    ;;
  *) echo "usage: sanitize-env.sh asan|tsan" >&2; exit 2 ;;
esac
[ -f "$addon" ] || { echo "sanitize-env.sh: $addon is missing: run npm run build:$kind" >&2; exit 1; }
echo "export THREEFS_CLIENT_ADDON='$addon'"
echo "export LD_PRELOAD='$preload'"
