#!/usr/bin/env bash
# Builds benches/check.rs for aarch64 and runs it under qemu-user: a RELATIVE
# figure for the share check on ARM, not a Pi's speed (qemu translates the
# code; see "Share check" in benches/README.md for how far off it is).
#
# Two builds of the same bench:
#   detect  as shipped: sha2 picks the ARMv8 SHA-2 instructions at run time
#           when the CPU reports them (HWCAP), else its portable code;
#   soft    sha2's portable code forced (--cfg sha2_backend="soft"), the path
#           a CPU without the crypto extension takes, such as the Pi 4's
#           BCM2711. Every CPU model of qemu reports SHA-2, cortex-a72
#           included, so no -cpu choice reaches that path in the detect build.
# The detect build runs under each CPU in LOKA_QEMU_CPUS (default
# "max cortex-a72"), the soft one under the last of them. Extra arguments go
# to divan (e.g. `share` to run only those benches).
#
# Idempotent: installs only what is missing (as .ci/arm does), and each build
# keeps its own target directory, so a warm run is just the bench runs.
set -euo pipefail
cd "$(dirname "$0")/.."

target=aarch64-unknown-linux-gnu
sysroot=/usr/aarch64-linux-gnu
read -r -a cpus <<<"${LOKA_QEMU_CPUS:-max cortex-a72}"
target_dir=${CARGO_TARGET_DIR:-target}

need=()
for d in qemu-user gcc-aarch64-linux-gnu libc6-dev-arm64-cross jq; do
  dpkg -s "$d" >/dev/null 2>&1 || need+=("$d")
done
if ((${#need[@]})); then
  echo "installing: ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
rustup target list --installed | grep -qx "$target" || rustup target add "$target"

export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc

# Builds the bench into target directory $1 and prints its executable's path.
build() {
  CARGO_TARGET_DIR=$1 cargo bench --locked --bench check --target "$target" --no-run \
    --message-format=json-render-diagnostics |
    jq -r 'select(.reason == "compiler-artifact" and .target.name == "check"
                  and (.target.kind | index("bench"))) | .executable'
}

detect=$(build "$target_dir")
# A target directory of its own: other RUSTFLAGS would rebuild everything in
# the shared one, and the next detect build would rebuild it all again.
soft=$(CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUSTFLAGS='--cfg sha2_backend="soft"' \
  build "$target_dir/sha2-soft")

# Whether qemu CPU $1 reports SHA-2 (bit 6 of AT_HWCAP), which is what the
# detect build's choice of code depends on.
sha2_hwcap() {
  local hwcap
  hwcap=$(qemu-aarch64 -cpu "$1" -E LD_SHOW_AUXV=1 -L "$sysroot" "$detect" --list | awk '/^AT_HWCAP:/ { print $2 }')
  if (((0x$hwcap >> 6) & 1)); then echo "reports SHA-2: ARMv8 SHA-2 instructions"; else echo "no SHA-2: portable code"; fi
}

for cpu in "${cpus[@]}"; do
  echo "== detect build, qemu -cpu $cpu ($(sha2_hwcap "$cpu"))"
  qemu-aarch64 -cpu "$cpu" -L "$sysroot" "$detect" --bench "$@"
done
echo "== soft build, qemu -cpu ${cpus[-1]} (portable code whatever the CPU reports)"
qemu-aarch64 -cpu "${cpus[-1]}" -L "$sysroot" "$soft" --bench "$@"
