#!/usr/bin/env bash
# A CI phase ran past its limit (.ci/run): print what it was waiting for, then stop it.
#   bash scripts/ci-stuck.sh NAME LIMIT OUT PID    # PID leads the phase's process group
# What it prints: the test files in progress and the test each was in (NAME.running.json, written
# by scripts/ci-failures.mjs), every process of the group with its state and the kernel function
# it sleeps in, the kernel stack of any in uninterruptible sleep (a FUSE request, a disk), and the
# FUSE mounts (each read bounded: ps itself can stall behind a process whose memory map is busy). Then SIGTERM to the group, and SIGKILL to what is left 20 seconds later.
name=$1 limit=$2 out=$3 pid=$4
echo "==================== $name: still running after ${limit}s; what it was waiting for:"
if [ -f "$out/$name.running.json" ]; then
  echo "test files in progress (project, file, since, test in progress, since):"
  node -e 'for (const r of JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"))) console.log(`  ${r.project} ${r.file} since ${r.since}: ${r.test ?? "(no test started)"} since ${r.testSince ?? "-"}`)' "$out/$name.running.json"
fi
echo "processes (pid, ppid, state, seconds, kernel wait, command):"
timeout 30 ps -o pid=,ppid=,stat=,etimes=,wchan:32=,args= -g "$pid" | cut -c1-240 | sed 's/^/  /'
for p in $(timeout 30 ps -o pid= -g "$pid"); do
  if [ "$(timeout 10 ps -o stat= -p "$p" | cut -c1)" = D ] && [ -r "/proc/$p/stack" ]; then
    echo "kernel stack of $p (uninterruptible):"
    sed 's/^/    /' "/proc/$p/stack"
  fi
done
echo "FUSE mounts its processes see (npm test runs in a mount namespace of its own):"
for p in $(timeout 30 ps -o pid= -g "$pid"); do timeout 10 grep -E ' fuse' "/proc/$p/mounts" 2>/dev/null; done | sort -u | sed 's/^/  /'
kill -TERM -- "-$pid" 2>/dev/null
for _ in $(seq 10); do kill -0 "$pid" 2>/dev/null || exit 0; sleep 2; done
echo "still there after SIGTERM: SIGKILL"
kill -KILL -- "-$pid" 2>/dev/null
exit 0
