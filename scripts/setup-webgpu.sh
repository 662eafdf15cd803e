#!/usr/bin/env bash
# Installs what r3gpu needs to find a WebGPU adapter on a Debian/Ubuntu machine with no GPU:
# Mesa's lavapipe (a CPU Vulkan driver). Dawn needs Mesa >= 24; Debian 12 ships 22.3, so on bookworm
# the driver comes from bookworm-backports. Idempotent: does nothing when a recent lavapipe is present.
set -euo pipefail

say() { printf '[setup] %s\n' "$*"; }

icd_ok() {
  # A vendor GPU driver (NVIDIA, AMD's own) gives Dawn an adapter without Mesa.
  if ls /usr/share/vulkan/icd.d/ /etc/vulkan/icd.d/ 2>/dev/null | grep -qiE 'nvidia|amd_icd|amdvlk'; then return 0; fi
  local v
  v=$(dpkg-query -W -f='${Version}' mesa-vulkan-drivers 2>/dev/null || true)
  [ -n "$v" ] && dpkg --compare-versions "$v" ge 24
}

if [ "$(uname -s)" != Linux ]; then
  say "not Linux: skipping the CPU Vulkan driver (use the system's WebGPU)"; exit 0
fi
if ! command -v apt-get >/dev/null; then
  say "no apt-get: install a Vulkan driver (Mesa >= 24 lavapipe) by hand if no GPU is present"; exit 0
fi
if icd_ok; then
  say "a WebGPU-capable Vulkan driver is already installed"; exit 0
fi

SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
. /etc/os-release
if [ "${VERSION_CODENAME:-}" = bookworm ]; then
  if ! grep -rqs 'bookworm-backports' /etc/apt/sources.list /etc/apt/sources.list.d/; then
    # Use the mirror apt already uses, so the machine's network policy is respected.
    mirror=$( { cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources 2>/dev/null || true; } \
      | grep -vE '^\s*#' | grep -oE 'https?://[^ ]+' | grep -v security | sed -n 1p)
    mirror=${mirror:-http://deb.debian.org/debian}
    say "adding bookworm-backports from $mirror"
    echo "deb $mirror bookworm-backports main" | $SUDO tee /etc/apt/sources.list.d/r3gpu-backports.list >/dev/null
  fi
  say "installing mesa-vulkan-drivers from bookworm-backports (lavapipe)"
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq -t bookworm-backports mesa-vulkan-drivers libvulkan1 >/dev/null
else
  say "installing mesa-vulkan-drivers (lavapipe)"
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq mesa-vulkan-drivers libvulkan1 >/dev/null
fi
say "installed Mesa Vulkan drivers $(dpkg-query -W -f='${Version}' mesa-vulkan-drivers)"
