#!/usr/bin/env python3
"""Static stack use of the firmware: the deepest call path from a function, with
each function's frame, from the ELF's machine code (arm-none-eabi-objdump).

A frame is what a function's prologue reserves: `push` (4 bytes per register) and
`sub sp, #n`. Calls are `bl` to a symbol; an indirect call (`blx`) may go to any
function whose address is stored in `.rodata` (the vtables of plugins, HALs and
closures), except that only the VM calls plugins, so the paths it reports are an
upper bound. Recursion is cut (no function appears twice on a path).

Usage: stack-paths.py ELF [ROOT] [--skip NAME,NAME...] [--frames N]
  ROOT   part of the function name to start from (default: the firmware's main)
  --skip leave out calls to functions whose name contains one of these parts, e.g.
         `--skip unkeyed,::start` for the paths after start-up
"""
import collections
import re
import subprocess
import sys

args = sys.argv[1:]
skip = []
frames_shown = 40
if "--skip" in args:
    i = args.index("--skip")
    skip = args[i + 1].split(",")
    del args[i : i + 2]
if "--frames" in args:
    i = args.index("--frames")
    frames_shown = int(args[i + 1])
    del args[i : i + 2]
elf = args[0]
root = args[1] if len(args) > 1 else "__cortex_m_rt_main"


def run(*cmd):
    return subprocess.run(cmd, capture_output=True, text=True, check=True).stdout


funcs = {}
for line in run("arm-none-eabi-nm", "-n", "-S", "-C", elf).splitlines():
    p = line.split(None, 3)
    if len(p) == 4 and p[2] in "tTwW":
        funcs[int(p[0], 16) & ~1] = p[3]

frame = collections.Counter()
calls = collections.defaultdict(set)
indirect = set()
cur = None
header = re.compile(r"^([0-9a-f]+) <(.*)>:$")
insn = re.compile(r"^\s*[0-9a-f]+:\s+(\S+)\s*(.*)$")
for line in run("arm-none-eabi-objdump", "-d", "--no-show-raw-insn", "-C", elf).splitlines():
    m = header.match(line)
    if m:
        cur = funcs.get(int(m.group(1), 16), m.group(2))
        continue
    m = insn.match(line)
    if not m or cur is None:
        continue
    op, operands = m.group(1), m.group(2)
    if op == "push":
        n = 0
        for r in operands.strip("{} ").split(","):
            r = r.strip()
            if "-" in r:
                lo, hi = r.split("-")
                n += int(hi[1:]) - int(lo[1:]) + 1
            elif r:
                n += 1
        frame[cur] += 4 * n
    elif op == "sub" and operands.startswith("sp, #"):
        frame[cur] += int(operands.split("#")[1].split()[0])
    elif op == "bl":
        t = re.search(r"<(.*)>", operands)
        if t:
            calls[cur].add(t.group(1).split("+")[0])
    elif op == "blx":
        indirect.add(cur)

# Functions whose address is stored in .rodata (vtables).
taken = set()
for line in run("arm-none-eabi-objdump", "-s", "-j", ".rodata", elf).splitlines():
    p = line.split()
    if len(p) >= 2 and re.match(r"^[0-9a-f]{4,8}$", p[0]):
        for w in p[1:5]:
            if len(w) == 8 and re.match(r"^[0-9a-f]{8}$", w):
                v = int.from_bytes(bytes.fromhex(w), "little")
                if v & 1 and (v & ~1) in funcs:
                    taken.add(funcs[v & ~1])

memo = {}
busy = set()


def deepest(f):
    if f in memo:
        return memo[f]
    busy.add(f)
    targets = set(calls.get(f, ()))
    if f in indirect:
        if "vm::Vm" in f or "plugins::init_all" in f:
            targets |= taken
        else:
            targets |= {t for t in taken if "plugins::Plugin" not in t}
    best = (0, [])
    for t in targets:
        if t in busy or any(s in t for s in skip):
            continue
        d = deepest(t)
        if d[0] > best[0]:
            best = d
    busy.discard(f)
    memo[f] = (frame[f] + best[0], [(f, frame[f])] + best[1])
    return memo[f]


starts = sorted(f for f in set(funcs.values()) if root in f)
if not starts:
    sys.exit(f"no function named like {root!r}")
total, path = deepest(starts[0])
print(f"deepest path from {starts[0]}: {total} B")
acc = 0
for f, size in path[:frames_shown]:
    acc += size
    print(f"{size:6d} {acc:6d}  {f}{' (indirect calls)' if f in indirect else ''}")
