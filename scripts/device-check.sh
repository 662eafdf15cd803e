#!/usr/bin/env bash
# Proves r3gpu on a bare GPU machine and brings the figures back, in two stages:
#
#   bash scripts/device-check.sh pack [--output FILE] [--no-build]
#       here (a machine with Node and the npm dependencies): one archive, device/bundle.tar (git-ignored),
#       holding everything a bare x86-64 Linux machine with an NVIDIA driver needs to run the engine through
#       Dawn's Vulkan backend: a Node binary, the built project with its runtime dependencies only, the Vulkan
#       loader and the libraries the NVIDIA ICD may lack, and the shared golden sets that fit. It must fit,
#       with the working tree, in the 64 MiB that travels to the GPU machine.
#   bash scripts/device-check.sh run [--allow-cpu] [--bundle FILE]
#       there (and here against lavapipe, with --allow-cpu): unpacks the bundle, points the loader at the
#       driver's ICD, prints the adapter, runs `r3gpu check` on every golden set (with the kernels the tuner
#       picks, then `--all-variants`: every kernel variant), `r3gpu tune` and `r3gpu bench --quick` at the 0.5B
#       and 1.5B shapes, each under its own time limit, and
#       writes every JSON and one log to $OUT (a temporary folder when OUT is unset), ending with one
#       summary line per step. A failed step is reported and the next one still runs.
#
# Environment (run): OUT; R3GPU_DEVICE_CHECK_ALLOW_CPU=1 (= --allow-cpu); R3GPU_DEVICE_CHECK_SHAPES
# (default "qwen2.5-0.5b qwen2.5-1.5b"); R3GPU_DEVICE_CHECK_VARIANT_SETS (the golden sets checked with every
# variant, default all); R3GPU_DEVICE_CHECK_TUNE_TARGETS (shapes or model folders to tune, default the shapes);
# R3GPU_DEVICE_CHECK_BUDGET_S (the whole run's time limit, default 460
# on a GPU, 3600 on a CPU adapter); R3GPU_VK_ICD (an ICD JSON to use instead of searching for NVIDIA's);
# R3GPU_DEVICE_CHECK_KEEP=1 (keep the unpacked bundle). Pack: R3GPU_GOLDEN_DIR (default ../shared/golden).
# bench/NOTES.md ("On a GPU") says how to run it with the device tool and what it writes.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DEFAULT_BUNDLE="$REPO/device/bundle.tar"
# What the device tool carries to the GPU machine: the working tree and the carried paths together.
TRANSFER_LIMIT=$((64 * 1024 * 1024))
# Kept free below that limit for commits made between the pack and the run.
HEADROOM=$((1024 * 1024))
XZ_OPTS=(-9 -T1)
# Libraries linked only where the GPU machine lacks them (see link_fallbacks): NVIDIA's Vulkan ICD
# (libGLX_nvidia.so.0) links X11 and glvnd's dispatcher, which an image made for CUDA may not have; dawn.node
# needs GLIBCXX_3.4.30 (GCC 12), newer than the libstdc++ of older images.
FALLBACK_LIBS=(libstdc++.so.6 libgcc_s.so.1 libX11.so.6 libXext.so.6 libxcb.so.1 libXau.so.6 libXdmcp.so.6
  libbsd.so.0 libmd.so.0 libGLdispatch.so.0)
SHAPES_DEFAULT="qwen2.5-0.5b qwen2.5-1.5b"

say() { printf '[device-check] %s\n' "$*"; }
die() { printf '[device-check] error: %s\n' "$*" >&2; exit 1; }
need() { command -v "$1" >/dev/null || die "$1 is missing (it is needed to $2)"; }
mib() { awk -v b="$1" 'BEGIN { printf "%.2f MiB", b / 1048576 }'; }

usage() {
  sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d' | sed 's/^# \{0,1\}//'
}

ldconfig_p() { { ldconfig -p 2>/dev/null || /sbin/ldconfig -p 2>/dev/null || true; }; }

# The path of an x86-64 library by soname, as the dynamic loader would find it (empty when absent).
find_lib() {
  local so=$1 d p
  p=$(ldconfig_p | awk -v so="$so" '$1 == so && /x86-64/ { print $NF; exit }')
  if [ -z "$p" ]; then
    for d in /lib/x86_64-linux-gnu /usr/lib/x86_64-linux-gnu /usr/lib64 /lib64 /usr/lib; do
      if [ -e "$d/$so" ]; then p="$d/$so"; break; fi
    done
  fi
  printf '%s' "$p"
}

# The newest GLIBC_x.y symbol version any of the files needs.
glibc_needed() {
  objdump -T "$@" 2>/dev/null | grep -oE 'GLIBC_[0-9]+(\.[0-9]+)+' | sed 's/GLIBC_//' | sort -uV | tail -n 1
}

# Bytes of what the device tool copies besides the carried paths: tracked and untracked-not-ignored files.
tree_bytes() {
  { git -C "$REPO" ls-files -z -co --exclude-standard | (cd "$REPO" && xargs -0 -r stat -c %s -- 2>/dev/null) || true; } |
    awk '{ s += $1 } END { printf "%d", s }'
}

# ---------------------------------------------------------------------------------------------------------
# pack
# ---------------------------------------------------------------------------------------------------------

pack() {
  local out=$DEFAULT_BUNDLE build=1
  while [ $# -gt 0 ]; do
    case $1 in
      --output) out=${2:?--output needs a file}; shift 2 ;;
      --no-build) build=0; shift ;;
      *) die "pack: unknown option $1 (see: bash scripts/device-check.sh --help)" ;;
    esac
  done
  [ "$(uname -s) $(uname -m)" = "Linux x86_64" ] || die "pack makes a Linux x86-64 bundle from this machine's binaries; this is $(uname -s) $(uname -m)"
  need tar "pack"; need xz "compress the bundle"; need strip "strip the binaries (binutils)"; need objdump "read glibc versions (binutils)"
  need node "pack Node"; need git "measure the working tree"
  case $out in /*) ;; *) out="$PWD/$out" ;; esac
  cd "$REPO"
  local t0; t0=$(date +%s)
  if [ "$build" = 1 ]; then say "building (npm run build)"; npm run --silent build; fi

  STAGE=$(mktemp -d "${TMPDIR:-/tmp}/r3gpu-pack.XXXXXX")
  trap 'rm -rf "$STAGE"' EXIT
  local root="$STAGE/r3gpu-device" parts="$STAGE/parts"
  local man="$parts/manifest.tsv"
  mkdir -p "$root/bin" "$root/lib/fallback" "$root/lib/doc" "$parts"

  # Node: the binary running this script, stripped of its debug information (99 MB -> 86 MB); the symbols
  # native addons link against are dynamic ones, which strip keeps.
  local node_bin; node_bin=$(node -p process.execPath)
  [ "$(od -An -tx1 -N4 "$node_bin" | tr -d ' \n')" = 7f454c46 ] || die "$node_bin is not an ELF binary (a version manager's shim?)"
  [ "$(node -p 'process.versions.node.split(".")[0]')" -ge 20 ] || die "r3gpu needs Node 20 or newer; this is $(node --version)"
  strip -o "$root/bin/node" "$node_bin"

  # The project: compiled JavaScript and runtime packages (scripts/device-pack.mjs says which and why).
  node scripts/device-pack.mjs "$root/app"
  local dawn="$root/app/node_modules/webgpu/dist/linux-x64/dawn.node"
  strip --strip-unneeded "$dawn"

  # The Vulkan loader from Debian's libvulkan1: Dawn dlopens libvulkan.so.1, which a CUDA image may lack.
  local vk; vk=$(find_lib libvulkan.so.1)
  [ -n "$vk" ] || die "libvulkan.so.1 not found: install Debian's libvulkan1 (bash scripts/setup-webgpu.sh does)"
  cp -L "$vk" "$root/lib/libvulkan.so.1"
  copyright "$vk"
  local so p found=() missing=()
  for so in "${FALLBACK_LIBS[@]}"; do
    p=$(find_lib "$so")
    if [ -n "$p" ]; then cp -L "$p" "$root/lib/fallback/$so"; copyright "$p"; found+=("$so"); else missing+=("$so"); fi
  done
  [ ${#missing[@]} -eq 0 ] || say "not on this machine, so not in the bundle as fallbacks: ${missing[*]}"

  local glibc; glibc=$(glibc_needed "$root/bin/node" "$dawn" "$root/lib/libvulkan.so.1")
  local commit; commit=$(git rev-parse --short=12 HEAD)
  [ -z "$(git status --porcelain -- src bench bin scripts shaders package.json 2>/dev/null)" ] || commit="$commit+uncommitted"
  {
    printf 'created\t%s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
    printf 'commit\t%s\n' "$commit"
    printf 'node\t%s\n' "$(node --version)"
    printf 'webgpu\t%s\n' "$(node -p 'require("./node_modules/webgpu/package.json").version')"
    printf 'libvulkan\t%s\n' "$(dpkg-query -W -f='${Version}' libvulkan1 2>/dev/null || echo unknown)"
    printf 'glibc_min\t%s\n' "$glibc"
    printf 'fallback\t%s\n' "${found[*]}"
  } >"$man"

  # Golden sets: the shared ones and the tree's own. A shared set identical to a folder of the tree travels
  # with the tree and is checked there; the others go in the bundle if they fit.
  local golden_dir=${R3GPU_GOLDEN_DIR:-$REPO/../shared/golden}
  local candidates=() twin d name
  declare -A in_tree=()
  if [ -d "$golden_dir" ]; then
    for d in "$golden_dir"/*/; do
      [ -f "$d/golden.json" ] || continue
      name=$(basename "$d")
      twin=$(tree_twin "$d")
      if [ -n "$twin" ]; then
        printf 'golden\t%s\ttree\t%s\tidentical to the tree'"'"'s %s\n' "$name" "$twin" "$twin" >>"$man"
        in_tree[$twin]=1
      else
        candidates+=("$d")
      fi
    done
  else
    say "no shared golden folder at $golden_dir (R3GPU_GOLDEN_DIR): only the tree's models are checked"
  fi
  for d in "$REPO"/models/*/; do
    [ -f "$d/golden.json" ] || continue
    twin="models/$(basename "$d")"
    [ -n "${in_tree[$twin]:-}" ] || printf 'golden\t%s\ttree\t%s\tin the tree\n' "$(basename "$d")" "$twin" >>"$man"
  done

  local tree; tree=$(tree_bytes)
  local budget=$((TRANSFER_LIMIT - HEADROOM - tree))
  say "working tree: $(mib "$tree") travels anyway; the bundle may use $(mib "$budget") of the $(mib "$TRANSFER_LIMIT")"
  # The bundle is a plain tar of separately compressed parts (the engine, then each golden set that fits), so
  # that what a golden set adds is known exactly before it is added and nothing is compressed twice.
  contents "$root" >"$parts/contents.txt"
  say "compressing (xz ${XZ_OPTS[*]}: about a minute and a half)"
  # Meanwhile, on another core, the golden sets' compressed sizes (cached), which decide what else fits.
  local sizing=""
  if [ ${#candidates[@]} -gt 0 ]; then
    (for d in "${candidates[@]}"; do compressed_size "$d" >/dev/null; done) &
    sizing=$!
  fi
  compress "$STAGE" r3gpu-device "$parts/core.tar.xz"
  [ -z "$sizing" ] || wait "$sizing" || die "measuring the golden sets' compressed sizes failed"
  local size; size=$(stat -c %s "$parts/core.tar.xz")
  [ "$size" -le "$budget" ] || die "the engine alone compresses to $(mib "$size"), over the $(mib "$budget") left beside the tree"
  local gsize left
  for d in "${candidates[@]}"; do
    name=$(basename "$d")
    left=$((budget - size - 10240))
    gsize=$(compressed_size "$d")
    if [ "$gsize" -le "$left" ]; then
      compress "$(dirname "$d")" "$name" "$parts/golden-$name.tar.xz"
      gsize=$(stat -c %s "$parts/golden-$name.tar.xz")
      printf 'golden\t%s\tbundle\tgolden/%s\t%s compressed\n' "$name" "$name" "$(mib "$gsize")" >>"$man"
      size=$((size + gsize))
    else
      printf 'golden\t%s\tabsent\t-\tnot in the bundle (size budget: %s compressed, %s left of the %s beside the tree)\n' \
        "$name" "$(mib "$gsize")" "$(mib "$left")" "$(mib "$budget")" >>"$man"
      say "$name: not in the bundle: $(mib "$gsize") compressed, only $(mib "$left") left"
    fi
  done
  mkdir -p "$(dirname "$out")"
  local members=(manifest.tsv contents.txt core.tar.xz)
  for d in "$parts"/golden-*.tar.xz; do [ -f "$d" ] && members+=("$(basename "$d")"); done
  tar -C "$parts" --owner=0 --group=0 --numeric-owner --mtime=@0 -cf "$out.tmp" "${members[@]}"
  size=$(stat -c %s "$out.tmp")
  [ "$size" -le "$budget" ] || die "the bundle is $(mib "$size"), over the $(mib "$budget") left beside the tree"
  mv "$out.tmp" "$out"

  say "contents of the engine part (uncompressed sizes):"
  cat "$parts/contents.txt"
  say "manifest:"
  sed 's/^/  /' "$man"
  say "parts: $( (cd "$parts" && for f in *.tar.xz; do printf '%s %s, ' "$f" "$(mib "$(stat -c %s "$f")")"; done) | sed 's/, $//')"
  say "wrote ${out#"$REPO"/}: $(mib "$size"); with the working tree $(mib $((size + tree))) of the $(mib "$TRANSFER_LIMIT") that travel ($(($(date +%s) - t0)) s)"
}

# The tree folder (models/NAME) holding byte-identical copies of every file of the golden set $1, if any.
tree_twin() {
  local set=$1 m f ok
  for m in "$REPO"/models/*/; do
    ok=1
    for f in "$set"/*; do
      [ -f "$f" ] || continue
      cmp -s "$f" "$m/$(basename "$f")" || { ok=0; break; }
    done
    if [ "$ok" = 1 ]; then printf 'models/%s' "$(basename "$m")"; return; fi
  done
}

copyright() {
  local pkg
  pkg=$(dpkg -S "$(readlink -f "$1")" 2>/dev/null | sed -n '1s/:.*//p' || true)
  [ -n "$pkg" ] && [ -f "/usr/share/doc/$pkg/copyright" ] && cp "/usr/share/doc/$pkg/copyright" "$STAGE/r3gpu-device/lib/doc/$pkg.copyright"
  return 0
}

# compress DIR NAME FILE: DIR/NAME as a .tar.xz, with fixed owner, order and times (same inputs, same bytes).
compress() {
  tar -C "$1" --owner=0 --group=0 --numeric-owner --sort=name --mtime=@0 -cf - "$2" | xz "${XZ_OPTS[@]}" -c >"$3"
}

# The compressed size of a golden set, cached by content (a large set takes most of a minute to compress).
compressed_size() {
  local d=$1 cache key
  cache=${XDG_CACHE_HOME:-$HOME/.cache}/r3gpu-device-check
  key=$( (cd "$d" && sha256sum -- * && echo "xz ${XZ_OPTS[*]}") | sha256sum | cut -c1-32)
  if [ ! -s "$cache/$key" ]; then
    mkdir -p "$cache"
    say "measuring $(basename "$d") compressed" >&2
    compress "$(dirname "$d")" "$(basename "$d")" "$cache/$key.tar.xz"
    stat -c %s "$cache/$key.tar.xz" >"$cache/$key"
    rm -f "$cache/$key.tar.xz"
  fi
  cat "$cache/$key"
}

# Files over 100 KiB one per line; the rest summed per folder.
contents() {
  (cd "$1" && find . -type f -printf '%s %P\n') | sort -k2 | awk '
    $1 >= 102400 { printf "  %10.2f MiB  %s\n", $1 / 1048576, $2; total += $1; next }
    { n = split($2, p, "/"); dir = n > 2 ? p[1] "/" p[2] "/" : (n > 1 ? p[1] "/" : "."); small[dir] += $1; count[dir]++; total += $1 }
    END {
      for (d in small) printf "  %10.2f MiB  %s (%d small files)\n", small[d] / 1048576, d, count[d]
      printf "  %10.2f MiB  in all, uncompressed\n", total / 1048576
    }'
}

# ---------------------------------------------------------------------------------------------------------
# run
# ---------------------------------------------------------------------------------------------------------

STEP_NAMES=() STEP_STATUS=() STEP_SECS=() STEP_NOTES=()
record() {
  STEP_NAMES+=("$1") STEP_STATUS+=("$2") STEP_SECS+=("$3") STEP_NOTES+=("$4")
  log "-- $1: $2 ($3 s) $4"
}
log() { printf '%s\n' "$*" | tee -a "$LOG"; }

# run_step NAME LIMIT_S CMD...: CMD under its own time limit (cut to what is left of the run's budget),
# output to the terminal, the log and $WORK/NAME.out. Sets RC (124/137: timed out) and SECS; RC 125 when
# the budget left no time to start it.
run_step() {
  local name=$1 limit=$2 left t0
  shift 2
  left=$((START + BUDGET_S - $(date +%s) - 5))
  if [ "$left" -lt 10 ]; then RC=125 SECS=0; return; fi
  [ "$limit" -le "$left" ] || limit=$left
  log "== $name (time limit ${limit} s)"
  t0=$(date +%s)
  set +e
  timeout -k 10 "$limit" "$@" </dev/null 2>&1 | tee -a "$LOG" "$WORK/$name.out"
  RC=${PIPESTATUS[0]}
  set -e
  SECS=$(($(date +%s) - t0))
  LIMIT=$limit
}

# The status of a finished run_step that exits 0 on success.
status_of() {
  case $RC in
    0) printf OK ;;
    124 | 137) printf TIMEOUT ;;
    125) printf SKIP ;;
    *) printf FAIL ;;
  esac
}

# What to say about a step that did not succeed: the time limit, or its last line of output.
why() {
  case $RC in
    124 | 137) printf 'past its %s s time limit; last output: %s' "$LIMIT" "$(last_line "$1")" ;;
    125) printf "out of time: the run's %s s budget is spent" "$BUDGET_S" ;;
    *) printf 'exit %s: %s' "$RC" "$(last_line "$1")" ;;
  esac
}
last_line() { grep -v '^\s*$' "$WORK/$1.out" 2>/dev/null | grep -v '^Warning: max' | tail -n 1 | cut -c1-300 || true; }

json_str() { printf '"%s"' "$(printf '%s' "$1" | sed 's/\\/\\\\/g; s/"/\\"/g' | tr -d '\000-\037')"; }

manifest() { awk -F'\t' -v k="$1" '$1 == k { print $2; exit }' "$MANIFEST"; }

run_stage() {
  local allow_cpu=${R3GPU_DEVICE_CHECK_ALLOW_CPU:-0} bundle=$DEFAULT_BUNDLE
  while [ $# -gt 0 ]; do
    case $1 in
      --allow-cpu) allow_cpu=1; shift ;;
      --bundle) bundle=${2:?--bundle needs a file}; shift 2 ;;
      *) die "run: unknown option $1 (see: bash scripts/device-check.sh --help)" ;;
    esac
  done
  need timeout "bound each step (coreutils)"; need tar "unpack the bundle"
  if [ -z "${OUT:-}" ]; then
    OUT=$(mktemp -d "${TMPDIR:-/tmp}/r3gpu-device-out.XXXXXX")
    say "OUT is not set: writing to $OUT"
  fi
  mkdir -p "$OUT"
  LOG="$OUT/device-check.log"
  : >"$LOG"
  WORK=$(mktemp -d "${TMPDIR:-/tmp}/r3gpu-device-check.XXXXXX")
  trap '[ "${R3GPU_DEVICE_CHECK_KEEP:-0}" = 1 ] && echo "kept $WORK" || rm -rf "$WORK"' EXIT
  B="$WORK/r3gpu-device" MANIFEST="$WORK/parts/manifest.tsv"
  START=$(date +%s)
  BUDGET_S=${R3GPU_DEVICE_CHECK_BUDGET_S:-460}
  local shapes=${R3GPU_DEVICE_CHECK_SHAPES:-$SHAPES_DEFAULT}
  # Per-step limits on an H100-class card; a CPU adapter (with --allow-cpu) gets the second set.
  local t_check=120 t_bench_small=150 t_bench_large=200 t_tune=150
  log "r3gpu device check, $(date -u +%Y-%m-%dT%H:%M:%SZ), $(uname -n); repository ${REPO}; OUT=$OUT; allow CPU: $allow_cpu"

  # 1. unpack
  if [ ! -f "$bundle" ]; then
    RC=1 SECS=0
    record unpack FAIL 0 "no bundle at $bundle: run 'bash scripts/device-check.sh pack' on a machine with Node and carry device/bundle.tar"
  else
    run_step unpack 90 bash "${BASH_SOURCE[0]}" _unpack "$bundle" "$WORK"
    if [ "$RC" = 0 ] && [ -f "$MANIFEST" ] && [ -x "$B/bin/node" ]; then
      record unpack OK "$SECS" "$(du -sm "$B" | cut -f1) MB from $(basename "$bundle") ($(mib "$(stat -c %s "$bundle")")), packed $(manifest created) from commit $(manifest commit)"
    else
      record unpack "$(status_of)" "$SECS" "$(why unpack)"
    fi
  fi
  local unpacked=0 NODE="$B/bin/node" APP="$B/app"
  [ -x "$NODE" ] && unpacked=1
  [ "$unpacked" = 1 ] && sed 's/^/  /' "$MANIFEST" | tee -a "$LOG"

  # 2. host: the machine, its driver and its card (informational, except a glibc too old for the bundle)
  run_step host 30 bash "${BASH_SOURCE[0]}" _host "$OUT" "$WORK"
  local card="" glibc need_glibc
  card=$(awk -F', ' 'NR == 1 { print $1 }' "$WORK/gpu.csv" 2>/dev/null || true)
  glibc=$(getconf GNU_LIBC_VERSION 2>/dev/null | awk '{ print $2 }' || true)
  need_glibc=""
  [ "$unpacked" = 0 ] || need_glibc=$(manifest glibc_min)
  if [ -n "$need_glibc" ] && [ -n "$glibc" ] && [ "$(printf '%s\n%s\n' "$need_glibc" "$glibc" | sort -V | head -n 1)" != "$need_glibc" ]; then
    record host FAIL "$SECS" "glibc $glibc is older than the $need_glibc the bundle's binaries need"
  else
    record host INFO "$SECS" "$(head -c 300 "$WORK/host.line" 2>/dev/null || echo "no host information")"
  fi

  # 3. vulkan: the loader and the ICD (in this shell, since it sets the environment of the steps after it)
  local vk_status
  if [ "$unpacked" = 1 ]; then
    local t0; t0=$(date +%s)
    log "== vulkan"
    set +e
    setup_vulkan "$allow_cpu" >"$WORK/vulkan.out" 2>&1
    RC=$?
    set -e
    tee -a "$LOG" <"$WORK/vulkan.out"
    vk_status=$([ "$RC" = 0 ] && echo OK || echo FAIL)
    record vulkan "$vk_status" $(($(date +%s) - t0)) "$(tail -n 1 "$WORK/vulkan.out")"
  else
    record vulkan SKIP 0 "the bundle is not unpacked"
  fi

  # 4. adapter
  local usable=0 cpu_label="" skip_why="the bundle is not unpacked"
  if [ "$unpacked" = 1 ]; then
    run_step adapter 60 "$NODE" "$REPO/scripts/device-adapter.mjs" "$APP" "$OUT/adapter.json"
    local head_line=""
    [ -s "$OUT/adapter.json" ] && head_line=$("$NODE" "$REPO/scripts/device-report.mjs" adapter "$OUT/adapter.json" 2>/dev/null || true)
    case $RC in
      0) usable=1; record adapter OK "$SECS" "$head_line" ;;
      3)
        local driver; driver=$(sed -n 's/.*"cpu_driver": "\([^"]*\)".*/\1/p' "$OUT/adapter.json" | head -n 1)
        if [ "$allow_cpu" = 1 ]; then
          usable=1
          cpu_label="CPU adapter (${driver:-software}): figures are not GPU figures"
          t_check=300 t_bench_small=900 t_bench_large=1500 t_tune=900
          [ -n "${R3GPU_DEVICE_CHECK_BUDGET_S:-}" ] || BUDGET_S=3600
          record adapter OK "$SECS" "$head_line"
        else
          skip_why="no GPU adapter (see the adapter step)"
          record adapter FAIL "$SECS" "CPU adapter (${driver:-software}) where a GPU was expected: its figures are not GPU figures, so no step runs on it (--allow-cpu measures it anyway); ${head_line#CPU adapter (*): }"
        fi
        ;;
      *)
        skip_why="no usable adapter (see the adapter step)"
        record adapter "$(status_of)" "$SECS" "$(why adapter)"
        # The loader's own account of which ICDs it tried and why they failed, for the log.
        log "-- the Vulkan loader's messages (VK_LOADER_DEBUG=error,warn,driver):"
        VK_LOADER_DEBUG=error,warn,driver timeout -k 5 60 "$NODE" "$REPO/scripts/device-adapter.mjs" "$APP" 2>&1 | head -c 30000 | tee -a "$LOG" >/dev/null || true
        ;;
    esac
  fi

  # 5. check every golden set
  local name where note dir line sets=()
  if [ "$unpacked" = 1 ]; then
    mapfile -t sets < <(grep $'^golden\t' "$MANIFEST")
    for line in "${sets[@]}"; do
      IFS=$'\t' read -r _ name where dir note <<<"$line"
      case $where in
        absent) record "check:$name" SKIP 0 "$name: $note"; continue ;;
        tree) dir="$REPO/$dir" ;;
        bundle) dir="$B/$dir" ;;
      esac
      if [ "$usable" != 1 ]; then record "check:$name" SKIP 0 "$skip_why"; continue; fi
      run_step "check:$name" "$t_check" "$NODE" "$APP/bin/r3gpu.js" check "$dir"
      local verdict; verdict=$(grep -E '^(PASS|FAIL)' "$WORK/check:$name.out" | tail -n 1 || true)
      case $RC in
        0) record "check:$name" PASS "$SECS" "${verdict:-exit 0}" ;;
        1) record "check:$name" FAIL "$SECS" "${verdict:-$(why "check:$name")}" ;;
        *) record "check:$name" "$(status_of)" "$SECS" "$(why "check:$name")" ;;
      esac
      # The same golden set with every kernel variant the adapter supports, a load per few variants.
      case " ${R3GPU_DEVICE_CHECK_VARIANT_SETS:-$name} " in
        *" $name "*) ;;
        *) record "variants:$name" SKIP 0 "left out by R3GPU_DEVICE_CHECK_VARIANT_SETS=\"$R3GPU_DEVICE_CHECK_VARIANT_SETS\""; continue ;;
      esac
      run_step "variants:$name" "$t_check" "$NODE" "$APP/bin/r3gpu.js" check "$dir" --all-variants
      verdict=$(grep -E '^(PASS|FAIL):' "$WORK/variants:$name.out" | tr '\n' ';' | sed 's/;$//' || true)
      case $RC in
        0) record "variants:$name" PASS "$SECS" "${verdict:-exit 0}" ;;
        1) record "variants:$name" FAIL "$SECS" "${verdict:-$(why "variants:$name")}" ;;
        *) record "variants:$name" "$(status_of)" "$SECS" "$(why "variants:$name")" ;;
      esac
    done
  else
    record check SKIP 0 "$skip_why"
  fi

  # 6. tune: every variant of every op slot at each shape (or model folder of R3GPU_DEVICE_CHECK_TUNE_TARGETS)
  local target tname args=()
  for target in ${R3GPU_DEVICE_CHECK_TUNE_TARGETS:-$shapes}; do
    tname=$(basename "$target")
    if [ "$usable" != 1 ]; then record "tune:$tname" SKIP 0 "$skip_why"; continue; fi
    if [ -d "$target" ]; then args=("$target"); else args=(--shape "$target"); fi
    run_step "tune:$tname" "$t_tune" "$NODE" "$APP/bin/r3gpu.js" tune "${args[@]}" --json "$OUT/tune-$tname.json"
    if [ "$RC" = 0 ] && [ -s "$OUT/tune-$tname.json" ]; then
      local tline trc=0
      tline=$("$NODE" "$REPO/scripts/device-report.mjs" tune "$OUT/tune-$tname.json") || trc=$?
      record "tune:$tname" "$([ "$trc" = 0 ] && echo OK || echo FAIL)" "$SECS" "$tline"
    else
      record "tune:$tname" "$(status_of)" "$SECS" "$(why "tune:$tname")"
    fi
  done

  # 7. bench --quick per shape, one process each (each measures its own roofline; peak RSS stays per shape)
  local shape limit done_shapes="" expect=()
  [ -n "$cpu_label" ] || expect=(--expect-gpu)
  for shape in $SHAPES_DEFAULT $shapes; do
    case " ${done_shapes:-} " in *" $shape "*) continue ;; esac
    done_shapes="${done_shapes:-} $shape"
    case " $shapes " in
      *" $shape "*) ;;
      *) record "bench:$shape" SKIP 0 "left out by R3GPU_DEVICE_CHECK_SHAPES=\"$shapes\""; continue ;;
    esac
    if [ "$usable" != 1 ]; then record "bench:$shape" SKIP 0 "$skip_why"; continue; fi
    limit=$([ "$shape" = qwen2.5-0.5b ] && echo "$t_bench_small" || echo "$t_bench_large")
    local json="$OUT/bench-$shape.json"
    run_step "bench:$shape" "$limit" "$NODE" "$APP/bin/r3gpu.js" bench --quick --shape "$shape" --json "$json"
    if [ "$RC" = 0 ] && [ -s "$json" ]; then
      local headline hrc=0
      headline=$(R3GPU_CARD="$card" "$NODE" "$REPO/scripts/device-report.mjs" bench "$json" "${expect[@]}") || hrc=$?
      record "bench:$shape" "$([ "$hrc" = 0 ] && echo OK || echo FAIL)" "$SECS" "$headline"
    else
      record "bench:$shape" "$(status_of)" "$SECS" "$(why "bench:$shape")"
    fi
  done

  # 8. summary
  local i line failed=0 total=$(($(date +%s) - START))
  log ""
  log "== summary ($total s in all; files in $OUT)"
  {
    printf '{\n  "date": %s,\n  "host": %s,\n  "card": %s,\n  "allow_cpu": %s,\n  "cpu_adapter": %s,\n  "seconds": %s,\n  "steps": [\n' \
      "$(json_str "$(date -u +%Y-%m-%dT%H:%M:%SZ)")" "$(json_str "$(uname -n)")" "$(json_str "$card")" \
      "$([ "$allow_cpu" = 1 ] && echo true || echo false)" "$([ -n "$cpu_label" ] && echo true || echo false)" "$total"
    local sep=","
    for i in "${!STEP_NAMES[@]}"; do
      [ "$i" -lt $((${#STEP_NAMES[@]} - 1)) ] || sep=""
      printf '    {"step": %s, "status": %s, "seconds": %s, "note": %s}%s\n' "$(json_str "${STEP_NAMES[$i]}")" \
        "$(json_str "${STEP_STATUS[$i]}")" "${STEP_SECS[$i]}" "$(json_str "${STEP_NOTES[$i]}")" "$sep"
    done
    printf '  ]\n}\n'
  } >"$OUT/summary.json"
  for i in "${!STEP_NAMES[@]}"; do
    case ${STEP_STATUS[$i]} in FAIL | TIMEOUT) failed=1 ;; esac
    line=$(printf '%-22s %-7s %5ss  %s' "${STEP_NAMES[$i]}" "${STEP_STATUS[$i]}" "${STEP_SECS[$i]}" "${STEP_NOTES[$i]}")
    [ -z "$cpu_label" ] || line="$line [$cpu_label]"
    log "$line"
  done
  return "$failed"
}

# Finds the loader and the ICD and sets LD_LIBRARY_PATH, VK_DRIVER_FILES and VK_ICD_FILENAMES. Prints what it
# found; the last line is the step's summary. Returns 1 when the GPU cannot be reached.
setup_vulkan() {
  local allow_cpu=$1 d f icd="" lib="" libpath
  # The driver's own libraries (the NVIDIA container runtime mounts them under /usr/local/nvidia).
  local paths="$B/lib"
  for d in /usr/local/nvidia/lib64 /usr/local/nvidia/lib; do [ -d "$d" ] && paths="$paths:$d"; done
  export LD_LIBRARY_PATH="$paths${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  local icd_dirs=(/usr/local/nvidia/share/vulkan/icd.d /usr/local/nvidia/etc/vulkan/icd.d /etc/vulkan/icd.d
    /usr/share/vulkan/icd.d /usr/local/share/vulkan/icd.d /usr/local/etc/vulkan/icd.d)
  for d in "${icd_dirs[@]}"; do [ -d "$d" ] && echo "ICD folder $d: $(find "$d" -mindepth 1 -maxdepth 1 -printf '%f ')"; done
  if [ -n "${R3GPU_VK_ICD:-}" ]; then
    [ -f "$R3GPU_VK_ICD" ] || { echo "R3GPU_VK_ICD=$R3GPU_VK_ICD: no such file"; return 1; }
    icd=$R3GPU_VK_ICD
  else
    for d in "${icd_dirs[@]}"; do
      for f in "$d"/nvidia*.json; do [ -f "$f" ] && { icd=$f; break 2; }; done
    done
  fi
  if [ -z "$icd" ]; then
    # No manifest, but the driver's Vulkan library may be there: describe it to the loader ourselves.
    for f in /usr/local/nvidia/lib64/libGLX_nvidia.so.0 /usr/local/nvidia/lib/libGLX_nvidia.so.0 "$(find_lib libGLX_nvidia.so.0)"; do
      if [ -n "$f" ] && [ -f "$f" ]; then
        icd="$WORK/nvidia_icd.json"
        printf '{ "file_format_version": "1.0.0", "ICD": { "library_path": "%s", "api_version": "1.3.0" } }\n' "$f" >"$icd"
        echo "no NVIDIA ICD manifest; wrote $icd for $f"
        break
      fi
    done
  fi
  if [ -z "$icd" ]; then
    echo "NVIDIA driver libraries present: $( { ls /usr/local/nvidia/lib64 /usr/local/nvidia/lib 2>/dev/null; ldconfig_p | awk '{ print $1 }'; } | grep -iE 'nvidia|cuda' | sort -u | tr '\n' ' ')"
    echo "NVIDIA_DRIVER_CAPABILITIES=${NVIDIA_DRIVER_CAPABILITIES:-unset}"
    if [ "$allow_cpu" = 1 ]; then
      echo "no NVIDIA Vulkan ICD: the loader uses its default ICDs (--allow-cpu)"
      return 0
    fi
    echo "no NVIDIA Vulkan ICD: no nvidia*.json in ${icd_dirs[*]} and no libGLX_nvidia.so.0 (the NVIDIA container runtime mounts the Vulkan driver only with the 'graphics' capability, NVIDIA_DRIVER_CAPABILITIES=all or compute,utility,graphics)"
    return 1
  fi
  export VK_DRIVER_FILES=$icd VK_ICD_FILENAMES=$icd
  echo "ICD $icd:"
  sed 's/^/  /' "$icd"
  libpath=$(sed -n 's/.*"library_path"[[:space:]]*:[[:space:]]*"\([^"]*\)".*/\1/p' "$icd" | head -n 1)
  case $libpath in
    /*) lib=$libpath ;;
    */*) lib="$(dirname "$icd")/$libpath" ;;
    ?*)
      local IFS=:
      for d in $LD_LIBRARY_PATH; do [ -f "$d/$libpath" ] && { lib="$d/$libpath"; break; }; done
      unset IFS
      [ -n "$lib" ] || lib=$(find_lib "$libpath")
      ;;
  esac
  if [ -z "$lib" ] || [ ! -f "$lib" ]; then
    echo "the ICD $icd names library_path \"$libpath\", which is not found (looked in LD_LIBRARY_PATH=$LD_LIBRARY_PATH and the loader's cache)"
    return 1
  fi
  echo "ICD library: $lib"
  link_fallbacks "$B/bin/node" "$B/app/node_modules/webgpu/dist/linux-x64/dawn.node" "$B/lib/libvulkan.so.1" "$lib" || return 1
  echo "loader $B/lib/libvulkan.so.1 (Debian libvulkan1 $(manifest libvulkan)), ICD $icd -> $lib${FALLBACKS_USED:+; from the bundle: $FALLBACKS_USED}"
}

# Links the bundle's copy of each library the files need but the machine lacks (or has too old) into a
# folder on LD_LIBRARY_PATH. Only missing ones: a bundled library never shadows one the machine has.
link_fallbacks() {
  command -v ldd >/dev/null || { echo "no ldd: cannot check the libraries the binaries need"; return 0; }
  local fb="$WORK/lib-fallback" round so missing unresolved=""
  FALLBACKS_USED=""
  mkdir -p "$fb"
  for round in 1 2 3 4; do
    # "libX.so => not found", and "FILE: /lib/…/libstdc++.so.6: version `GLIBCXX_3.4.30' not found (required by FILE)".
    missing=$(ldd "$@" 2>&1 | sed -nE 's/^[[:space:]]*([^[:space:]]+) => not found.*/\1/p; s/^(.*: )?[^[:space:]]*\/([^/:[:space:]]+): version .* not found.*/\2/p' | sort -u)
    [ -n "$missing" ] || break
    unresolved=""
    for so in $missing; do
      if [ -f "$B/lib/fallback/$so" ] && [ ! -e "$fb/$so" ]; then
        ln -s "$B/lib/fallback/$so" "$fb/$so"
        FALLBACKS_USED="$FALLBACKS_USED $so"
      elif [ ! -e "$fb/$so" ]; then
        unresolved="$unresolved $so"
      fi
    done
    case ":$LD_LIBRARY_PATH:" in *":$fb:"*) ;; *) LD_LIBRARY_PATH="$B/lib:$fb:${LD_LIBRARY_PATH#"$B/lib:"}" ;; esac
    [ "$round" != 4 ] || break
  done
  FALLBACKS_USED=${FALLBACKS_USED# }
  missing=$(ldd "$@" 2>&1 | grep -E 'not found' || true)
  if [ -n "$missing" ]; then
    echo "$missing"
    echo "libraries missing (or too old) on this machine and not in the bundle:${unresolved:- see above}"
    return 1
  fi
}

# The host step (a separate process, so that it runs under its time limit).
host_info() {
  local out=$1 os cpu
  os=$(. /etc/os-release 2>/dev/null && echo "${PRETTY_NAME:-}")
  cpu=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo 2>/dev/null)
  echo "kernel: $(uname -srm); OS: ${os:-unknown}; $(getconf GNU_LIBC_VERSION 2>/dev/null || echo 'glibc: unknown')"
  echo "CPU: $cpu, $(nproc) cores; memory: $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo)"
  env | grep -E '^(NVIDIA_|CUDA_VERSION|VK_)' | sort || true
  [ -d /usr/local/nvidia ] && { echo "/usr/local/nvidia:"; find /usr/local/nvidia -maxdepth 3 | head -n 80 | sed 's/^/  /'; }
  local gpu="no nvidia-smi"
  if command -v nvidia-smi >/dev/null; then
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,clocks.max.memory,pcie.link.gen.max,power.limit \
      --format=csv,noheader >"$WORK/gpu.csv" 2>&1 || true
    { nvidia-smi; nvidia-smi -q; } >"$out/nvidia-smi.txt" 2>&1 || true
    echo "nvidia-smi: $(cat "$WORK/gpu.csv")"
    gpu="GPU: $(head -n 1 "$WORK/gpu.csv")"
  fi
  echo "$gpu; ${os:-unknown OS}; $(getconf GNU_LIBC_VERSION 2>/dev/null); $(nproc) CPU cores" >"$WORK/host.line"
}

# The bundle's parts into DEST: DEST/parts (the manifest), DEST/r3gpu-device (the engine, then golden/NAME).
unpack_bundle() {
  local bundle=$1 dest=$2 part name
  mkdir -p "$dest/parts"
  tar -xf "$bundle" -C "$dest/parts"
  for part in "$dest"/parts/*.tar.xz; do
    name=$(basename "$part" .tar.xz)
    case $name in core) into=$dest ;; golden-*) into="$dest/r3gpu-device/golden"; mkdir -p "$into" ;; *) continue ;; esac
    if command -v xz >/dev/null; then
      tar -xJf "$part" -C "$into"
    elif command -v python3 >/dev/null; then
      # No xz binary: Python's standard library reads .tar.xz.
      python3 - "$part" "$into" <<'PY'
import sys, tarfile
with tarfile.open(sys.argv[1], "r:xz") as t:
    t.extractall(sys.argv[2], **({"filter": "tar"} if hasattr(tarfile, "data_filter") else {}))
PY
    else
      echo "cannot unpack $part: neither xz nor python3 is installed" >&2
      return 1
    fi
    rm -f "$part"
    echo "unpacked $name"
  done
}

case ${1:-} in
  pack) shift; pack "$@" ;;
  run) shift; run_stage "$@" ;;
  _unpack) WORK=$3; unpack_bundle "$2" "$3" ;;
  _host) WORK=$3; host_info "$2" ;;
  -h | --help | help) usage ;;
  *) usage >&2; exit 2 ;;
esac
