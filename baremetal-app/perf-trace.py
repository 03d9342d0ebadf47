#!/usr/bin/env python3
"""Counts the Cortex-M0 instructions of packet round trips in a QEMU exec trace.

Input: the firmware ELF and a log of `qemu-system-arm -accel tcg,one-insn-per-tb=on
-d exec,nochain` (one "Trace" line per executed instruction). The firmware calls
`mark_packet_in` when the UART delivered a whole packet and `mark_packet_out` when
it sent one. For the cheapest round trip after the first that ran the VM (the host
may resend a command while the trace slows QEMU down; the device answers such a
duplicate from SAGDP's copy without running the VM) it prints:
  receive = instructions from the previous `mark_packet_out` to `mark_packet_in`
            (UART bytes, SADLP decoding, the pump's idle polls and waits);
  process = instructions from `mark_packet_in` to `mark_packet_out` (SASP, SAGDP,
            SACCP, VM and plugin up, the reply down, SADLP encoding and UART
            writes), split by the function each instruction belongs to.
"""
import bisect
import collections
import re
import subprocess
import sys

elf, log = sys.argv[1], sys.argv[2]
nm = subprocess.run(["arm-none-eabi-nm", "-C", "-n", "-S", elf],
                    capture_output=True, text=True, check=True).stdout
addrs, names = [], []
for line in nm.splitlines():
    p = line.split(None, 3)
    if len(p) == 4 and p[2] in "tTwW":
        addrs.append(int(p[0], 16))
        names.append(p[3])
mark_in = names.index("zepto_baremetal::board::mark_packet_in")
mark_out = names.index("zepto_baremetal::board::mark_packet_out")
mark_in, mark_out = addrs[mark_in], addrs[mark_out]


def layer(name):
    rules = [
        (r"^(<[^>]*as )?<?(aes|cipher|ctr|eax|cmac|digest|hybrid_array|speck_cipher|inout|dbl|zepto_kernel::eax)::", "crypto (AES/Speck, CTR, CMAC, EAX)"),
        (r"crc::crc32", "SAGDP packet digests (CRC-32)"),
        (r"zepto_kernel::sasp", "SASP"),
        (r"zepto_kernel::sagdp", "SAGDP"),
        (r"zepto_kernel::saccp", "SACCP"),
        (r"zepto_kernel::nonce_store", "nonce store"),
        (r"zepto_kernel::vm|zepto_kernel::plugins|half::", "VM and plugin"),
        (r"zepto_kernel::heap|zepto_kernel::encoding", "Zepto Heap"),
        (r"zepto_kernel::pump|zepto_kernel::count", "pump (with inlined layer code)"),
        (r"tx_frame|tx_byte|crc::|zepto_kernel::sadlp", "SADLP + UART"),
        (r"zepto_baremetal::board", "board HAL"),
        (r"memcpy|memmove|memset|memclr|compiler_builtins|__aeabi", "memcpy/memmove/builtins"),
    ]
    for pat, cat in rules:
        if re.search(pat, name):
            return cat
    return "other: " + name[:60]


pc_re = re.compile(r"^Trace \d+: \S+ \[[0-9a-f]+/([0-9a-f]+)/")
trips = []  # (receive count, process Counter by function)
receive, process, in_packet = 0, None, False
with open(log, errors="replace") as f:
    for line in f:
        m = pc_re.match(line)
        if not m:
            continue
        pc = int(m.group(1), 16)
        if pc == mark_in:
            in_packet, process = True, collections.Counter()
        if in_packet:
            i = bisect.bisect_right(addrs, pc) - 1
            process[names[i] if i >= 0 else "?"] += 1
        else:
            receive += 1
        if pc == mark_out and in_packet:
            trips.append((receive, process))
            in_packet, receive = False, 0

if not trips:
    sys.exit("no packet round trip in the trace")
print(f"round trips in the trace: {len(trips)}; totals: "
      + ", ".join(str(r + sum(p.values())) for r, p in trips))
ran_vm = [t for t in trips if any("zepto_kernel::vm" in f for f in t[1])]
later = ran_vm[1:] or ran_vm or trips
recv, proc = min(later, key=lambda t: t[0] + sum(t[1].values()))
total = recv + sum(proc.values())
print(f"cheapest round trip running the VM, after the first: {total} instructions")
print(f"  receive (UART, SADLP decode, idle polls): {recv}")
print(f"  process (up the stack, VM, down, send):   {sum(proc.values())}")
by_layer = collections.Counter()
for fn, n in proc.items():
    by_layer[layer(fn)] += n
print("process, by layer:")
for cat, n in by_layer.most_common():
    print(f"  {n:8d}  {cat}")
print("process, top functions:")
for fn, n in proc.most_common(12):
    print(f"  {n:8d}  {fn[:90]}")
