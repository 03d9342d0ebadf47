#!/usr/bin/env bash
# Builds the micro:bit firmware (release) and runs it in QEMU's `microbit` machine
# under zepto-host/tests/qemu_microbit.rs, which talks to it over the emulated UART.
# Prints the RAM the device measured (peak stack, .data + .bss, heap, device object).
# Usage: baremetal-app/qemu-test.sh [CONFIG...]   (default: vm-small; also vm-one,
#        vm-medium, and each with -speck and/or -big, e.g. vm-small-big: the `big`
#        build runs the 64-byte echo test, the others the full device test)
set -euo pipefail
cd "$(dirname "$0")"
root=$(cd .. && pwd)
. ./firmware.sh
out=$(target_dir)/qemu
mkdir -p "$out"
configs=("$@")
[ ${#configs[@]} -gt 0 ] || configs=(vm-small)
for c in "${configs[@]}"; do
    # CONFIG = vm-one | vm-small | vm-medium, then optional -speck and/or -big.
    feats=$c
    host_feats=()
    test_name=microbit_firmware_in_qemu
    if [ "${feats%-big}" != "$feats" ]; then
        feats=${feats%-big}
        big=,big
        test_name=microbit_echo_64_bytes
    else
        big=
    fi
    if [ "${feats%-speck}" != "$feats" ]; then
        feats="${feats%-speck},speck"
        host_feats=(--features speck-firmware)
    fi
    feats="$feats$big"
    fw=$(build_firmware "$feats")
    elf="$out/$c.elf"
    cp "$fw" "$elf"
    echo "== $c"
    log="$out/$c.log"
    if ! (cd "$root" && ZEPTO_MICROBIT_ELF="$elf" nice -n 10 cargo test -p zepto-host \
        "${host_feats[@]}" --test qemu_microbit -- --ignored --exact "$test_name" --nocapture) >"$log" 2>&1; then
        cat "$log"
        echo "qemu test of $c failed"
        exit 1
    fi
    grep -E "device RAM|test result" "$log"
done
