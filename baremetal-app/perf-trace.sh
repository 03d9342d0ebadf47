#!/usr/bin/env bash
# Instructions one 64-byte command round trip costs the Cortex-M0, counted by QEMU:
# builds the firmware with `big` (room for 64-byte programs), runs the 64-byte echo
# test of zepto-host/tests/qemu_microbit.rs with QEMU logging every executed
# instruction (-accel tcg,one-insn-per-tb=on -d exec,nochain), and counts them
# with perf-trace.py. Debian's QEMU ships no TCG plugins (no libinsn.so), so the
# exec log stands in for one. The log (~400 MB) is deleted afterwards.
# Usage: baremetal-app/perf-trace.sh [vm-one|vm-small|vm-medium] [speck]
#        (default vm-small with AES)
set -euo pipefail
cd "$(dirname "$0")"
root=$(cd .. && pwd)
. ./firmware.sh
vm=vm-small
host_feats=()
speck=
for a in "$@"; do
    case "$a" in
    vm-one | vm-small | vm-medium) vm=$a ;;
    speck) speck=,speck ;;
    *) echo "usage: $0 [vm-one|vm-small|vm-medium] [speck]" >&2; exit 2 ;;
    esac
done
feats=$vm,big$speck
[ -z "$speck" ] || host_feats=(--features speck-firmware)
out=$(target_dir)/trace
mkdir -p "$out"
fw=$(build_firmware "$feats")
elf="$out/fw.elf"
cp "$fw" "$elf"
log="$out/exec.log"
rm -f "$log"
(cd "$root" && ZEPTO_MICROBIT_ELF="$elf" \
    ZEPTO_QEMU_ARGS="-accel tcg,one-insn-per-tb=on -d exec,nochain -D $log" \
    nice -n 10 cargo test -q -p zepto-host "${host_feats[@]}" --test qemu_microbit \
    microbit_echo_64_bytes -- --exact --ignored >/dev/null)
echo "firmware features: $feats"
python3 perf-trace.py "$elf" "$log"
rm -f "$log"
