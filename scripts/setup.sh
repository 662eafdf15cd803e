#!/usr/bin/env bash
# One-time (and idempotent) set-up of r3gpu on a Debian/Ubuntu machine: a WebGPU-capable Vulkan driver
# when no GPU driver is present, the npm dependencies pinned in package-lock.json, and the build.
set -euo pipefail
cd "$(dirname "$0")/.."
say() { printf '[setup] %s\n' "$*"; }

if ! command -v node >/dev/null || [ "$(node -p 'process.versions.node.split(".")[0]')" -lt 20 ]; then
  echo "[setup] r3gpu needs Node.js 20 or newer (found: $(node --version 2>/dev/null || echo none))" >&2
  exit 1
fi
bash scripts/setup-webgpu.sh
if ! command -v chromium >/dev/null && command -v apt-get >/dev/null; then
  say "installing Debian's chromium (the browser test suite drives it headless)"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
if ! { command -v xz && command -v strip && command -v objdump; } >/dev/null && command -v apt-get >/dev/null; then
  say "installing xz-utils and binutils (scripts/device-check.sh pack strips and compresses the GPU-machine bundle)"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq xz-utils binutils >/dev/null
fi
say "installing npm dependencies (npm ci)"
npm ci --no-audit --no-fund --loglevel=error
say "building (shaders + TypeScript -> dist/)"
npm run --silent build
say "ready: try 'npx r3gpu check models/tiny-qwen2'"
