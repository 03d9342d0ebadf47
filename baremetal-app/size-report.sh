#!/usr/bin/env bash
# Builds the micro:bit firmware in release (opt-level "z", LTO, one codegen unit,
# panic = abort) for each configuration and prints flash and static RAM:
#   flash = .vector_table + .text + .rodata + .data (initial values)
#   static RAM = .data + .bss + .uninit
# The device object (protocol state, VM, heap arena) lives in main's stack frame;
# its RAM shows in the peak stack that qemu-test.sh measures.
# Usage: baremetal-app/size-report.sh [--symbols CONFIG]   (CONFIG e.g. vm-small)
set -euo pipefail
cd "$(dirname "$0")"
. ./firmware.sh
SIZE=${SIZE:-arm-none-eabi-size}
command -v "$SIZE" >/dev/null || SIZE=llvm-size
OUT=$(target_dir)/size
mkdir -p "$OUT"

CONFIGS=(
    "vm-only|vm-only"
    "vm-one|vm-one"
    "vm-small|vm-small"
    "vm-medium|vm-medium"
    "vm-one-speck|vm-one,speck"
    "vm-small-speck|vm-small,speck"
    "vm-medium-speck|vm-medium,speck"
    "vm-one-ecb|vm-one,hw-aes"
    "vm-small-ecb|vm-small,hw-aes"
    "vm-medium-ecb|vm-medium,hw-aes"
)

build() { # name features
    local fw
    fw=$(build_firmware "$2")
    cp "$fw" "$OUT/$1.elf"
}

section() { # elf name
    "$SIZE" -A "$1" | awk -v s="$2" '$1 == s { print $2; f = 1 } END { if (!f) print 0 }'
}

if [ "${1:-}" = "--symbols" ]; then
    name=${2:-vm-small}
    feats=$(printf '%s\n' "${CONFIGS[@]}" | awk -F'|' -v n="$name" '$1 == n { print $2 }')
    build "$name" "$feats"
    echo "largest functions of $name (bytes):"
    arm-none-eabi-nm --size-sort -S -C -t d "$OUT/$name.elf" | awk '$3 ~ /[tT]/' | tail -25
    exit 0
fi

printf '| %-16s | %6s | %6s | %6s | %6s | %9s | %10s |\n' \
    configuration text rodata data bss "flash" "static RAM"
printf '|%s|\n' "------------------|--------|--------|--------|--------|-----------|------------"
for c in "${CONFIGS[@]}"; do
    name=${c%%|*}
    feats=${c#*|}
    build "$name" "$feats"
    elf="$OUT/$name.elf"
    vt=$(section "$elf" .vector_table)
    text=$(section "$elf" .text)
    ro=$(section "$elf" .rodata)
    data=$(section "$elf" .data)
    bss=$(section "$elf" .bss)
    un=$(section "$elf" .uninit)
    printf '| %-16s | %6d | %6d | %6d | %6d | %9d | %10d |\n' "$name" \
        $((text + vt)) "$ro" "$data" "$bss" $((vt + text + ro + data)) $((data + bss + un))
done
