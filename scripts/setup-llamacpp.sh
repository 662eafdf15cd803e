#!/usr/bin/env bash
# Installs llama.cpp for `r3gpu bench --peer llama.cpp` and test/gguf.test.ts: node-llama-cpp 3.21.1 with only
# its Linux x64 CPU and Vulkan builds (164 MB), pinned by peers/llama.cpp/package-lock.json, into
# peers/llama.cpp/node_modules. r3gpu itself never needs it. node-llama-cpp's other prebuilt binaries (CUDA
# among them, 538 MB) are optional dependencies, left out here; its install script is not run (it would fetch
# or build llama.cpp when no prebuilt binary fits; the peer loads only the prebuilt ones). Idempotent.
set -euo pipefail
cd "$(dirname "$0")/../peers/llama.cpp"
say() { printf '[setup-llamacpp] %s\n' "$*"; }

platform="$(node -p 'process.platform + "-" + process.arch')"
if [ "$platform" != "linux-x64" ]; then
  echo "[setup-llamacpp] the pinned llama.cpp peer covers linux-x64 only (this is $platform);" \
    "on another platform, install node-llama-cpp@3.21.1 in peers/llama.cpp with npm install" >&2
  exit 1
fi
# npm ci writes node_modules/.package-lock.json last: newer than the lockfile means this lockfile is installed.
if [ node_modules/.package-lock.json -nt package-lock.json ] && [ -f node_modules/node-llama-cpp/package.json ]; then
  say "node-llama-cpp is installed in peers/llama.cpp"
  exit 0
fi
say "installing node-llama-cpp 3.21.1 with its Linux x64 CPU and Vulkan builds into peers/llama.cpp (npm ci)"
npm ci --omit=optional --ignore-scripts --no-audit --no-fund --loglevel=error
say "ready: r3gpu bench --peer llama.cpp"
