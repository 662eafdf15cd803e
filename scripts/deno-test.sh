#!/usr/bin/env bash
# Runs the Deno suite. Deno 2.9 with wgpu on lavapipe has been seen to abort ("double free or corruption",
# SIGABRT) after every test had passed, while tearing down WebGPU at exit (once in several CI runs, not
# reproducible on demand). Such a run is reported and counted as passed only when Deno's own summary says
# that every test passed and none failed; any failing test, or any other exit, still fails the suite.
set -uo pipefail
log=$(mktemp)
trap 'rm -f "$log"' EXIT
deno test --allow-read --allow-env --allow-write=/tmp test/deno/ 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
if [ "$rc" -gt 128 ] && grep -qE '\| [0-9]+ passed \| 0 failed' "$log"; then
  echo "[test:deno] every test passed; deno then died with signal $((rc - 128)) while exiting (wgpu teardown); counted as passed" >&2
  exit 0
fi
exit "$rc"
