#!/usr/bin/env python3
"""Where the code of a linked app goes, by source module, with LTO inlining undone.

usage: scripts/code-by-source.py <elf> [functions]

With LTO most of an app's code ends up inside a few large functions, so a symbol
table (`nm --size-sort`) says little about which source it came from. This script
reads the ELF's DWARF (release builds here keep `debug = true`): every code byte
goes to the innermost inlined function that is not a small piece of `core`/`alloc`
(an iterator, `Option::map`, a slice index ...), and is counted for that
function's module: `zepto_kernel::<module>`, `zepto-service`, `ipc` (the IPC
library), the `libtock*` crates, `core::fmt`, and other crates by name. Code of
`compiler_builtins` (memcpy, memmove, soft float) is counted by symbol, since its
precompiled debug information does not match the linked code. Prints one line
per part, largest first, and with `functions` the largest functions too.

Needs `llvm-dwarfdump`, `llvm-nm` and `llvm-cxxfilt` on the PATH.
"""
import re
import subprocess
import sys
from collections import defaultdict

CORE_GLUE = re.compile(
    r"^<?(core::(?!fmt)|alloc::|<?\[|&|usize|u8|u16|u32|u64|i32|i64|bool|\(|\*)"
)
LEGACY = [("$LT$", "<"), ("$GT$", ">"), ("$u20$", " "), ("$C$", ","), ("$RF$", "&"),
          ("$u7b$", "{"), ("$u7d$", "}"), ("$BP$", "*"), ("$u27$", "'"), ("$u5b$", "["),
          ("$u5d$", "]"), ("$u3b$", ";"), ("..", "::")]


def run(*cmd, stdin=None):
    return subprocess.run(cmd, input=stdin, capture_output=True, text=True, check=True).stdout


def demangle(names):
    names = sorted(set(names))
    out = run("llvm-cxxfilt", stdin="\n".join(names)).splitlines()
    table = {}
    for raw, name in zip(names, out):
        name = re.sub(r"::h[0-9a-f]{16}$", "", name)
        for a, b in LEGACY:
            name = name.replace(a, b)
        table[raw] = name[1:] if name.startswith("_<") else name
    return table


def code_dies(elf):
    """(depth, name, ranges) of every subprogram and inlined subroutine with code."""
    dies, cur = [], None
    tag = re.compile(r"^0x[0-9a-f]+:( +)(DW_TAG_\w+|NULL)")
    rng = re.compile(r"\[0x([0-9a-f]+), 0x([0-9a-f]+)\)")
    for line in run("llvm-dwarfdump", "--debug-info", elf).splitlines():
        m = tag.match(line)
        if m:
            cur = {"depth": len(m.group(1)), "tag": m.group(2), "name": None, "ranges": [],
                   "low": None, "high": None}
            dies.append(cur)
            continue
        if cur is None:
            continue
        s = line.strip()
        q = re.search(r'"([^"]*)"', s)
        if q and (s.startswith("DW_AT_abstract_origin") or s.startswith("DW_AT_linkage_name")
                  or s.startswith("DW_AT_specification")):
            cur["name"] = q.group(1)
        elif q and s.startswith("DW_AT_name") and cur["name"] is None:
            cur["name"] = q.group(1)
        elif s.startswith("DW_AT_low_pc"):
            cur["low"] = int(s.split("(")[1].rstrip(")"), 16)
        elif s.startswith("DW_AT_high_pc"):
            cur["high"] = int(s.split("(")[1].rstrip(")"), 16)
        elif "DW_OP" not in line and cur["tag"] in ("DW_TAG_subprogram",
                                                      "DW_TAG_inlined_subroutine"):
            cur["ranges"] += [(int(a, 16), int(b, 16)) for a, b in rng.findall(line)]
    for d in dies:
        if d["low"] is not None and d["high"] is not None and not d["ranges"]:
            high = d["high"] if d["high"] > d["low"] else d["low"] + d["high"]
            d["ranges"].append((d["low"], high))
    stack, out = [], []
    for d in dies:
        if d["tag"] == "NULL":
            continue
        while stack and stack[-1]["depth"] >= d["depth"]:
            stack.pop()
        if d["tag"] in ("DW_TAG_subprogram", "DW_TAG_inlined_subroutine") and d["ranges"]:
            chain = [x for x in stack if x.get("code")] + [d]
            d["code"] = True
            out.append((len(chain), [x["name"] or "?" for x in chain], d["ranges"]))
        stack.append(d)
    return out


def part(name):
    n = name.lstrip("<")
    m = re.match(r"zepto_kernel::(\w+)", n)
    if m:
        return "zepto_kernel::" + m.group(1)
    for prefix, label in [("core::fmt", "core::fmt"), ("zepto_service", "zepto-service"),
                          ("zepto_tock_ipc", "ipc (zepto-tock-ipc)"),
                          ("zepto_client", "zepto-client"), ("zepto_bad_client", "zepto-bad-client"),
                          ("libtock_runtime", "libtock_runtime"),
                          ("libtock_platform", "libtock_platform"),
                          ("libtock", "libtock drivers"), ("core::", "core (other)"),
                          ("alloc::", "alloc")]:
        if n.startswith(prefix):
            return label
    # `<Type as Trait>::f`: the type's crate, or the trait's for a primitive
    # type or a reference.
    m = re.match(r"&?(?:mut )?([\w:]+)(?:<[^ ]*>)? as ([\w:]+)", n)
    if m:
        own = m.group(1) if "::" in m.group(1) else m.group(2)
        return part(own)
    if n.startswith("OUTLINED_FUNCTION"):
        return "outlined (shared instruction sequences)"
    m = re.match(r"([a-z_][a-z0-9_]*)::", n)
    return m.group(1) if m else "other"


def main():
    elf = sys.argv[1]
    top = int(sys.argv[2]) if len(sys.argv) > 2 else 0
    # Code sections and the symbol of every address.
    text = []
    for line in run("llvm-readelf", "-S", "-W", elf).splitlines():
        m = re.search(r"\]\s+(\S+)\s+PROGBITS\s+([0-9a-f]+)\s+[0-9a-f]+\s+([0-9a-f]+)\s+\S+\s+(\S*X\S*)", line)
        if m:
            text.append((int(m.group(2), 16), int(m.group(3), 16)))
    syms = []
    for line in run("llvm-nm", "-S", "--defined-only", elf).splitlines():
        p = line.split()
        if len(p) == 4 and p[2] in "tTwW":
            syms.append((int(p[0], 16), int(p[1], 16), p[3]))
    owner = {}
    for depth, names, ranges in sorted(code_dies(elf), key=lambda e: e[0]):
        for a, b in ranges:
            for x in range(a, b, 2):
                owner[x] = names
    table = demangle([n for names in owner.values() for n in names] + [s[2] for s in syms])
    builtin = {}
    for addr, size, name in syms:
        dn = table.get(name, name)
        if dn.startswith("compiler_builtins") or name.startswith("__") or name in (
                "memcpy", "memmove", "memset", "memcmp", "bcmp"):
            for x in range(addr, addr + size, 2):
                builtin[x] = dn
    per_fn = defaultdict(int)
    total = 0
    for start, size in text:
        for x in range(start, start + size, 2):
            total += 2
            if x in builtin:
                per_fn["compiler_builtins::" + builtin[x].split("::")[-1]] += 2
                continue
            names = [table.get(n, n) for n in owner.get(x, ["(no debug information)"])]
            pick = names[0]
            for n in names:
                if not CORE_GLUE.match(n):
                    pick = n
            per_fn[pick] += 2
    parts = defaultdict(int)
    for n, s in per_fn.items():
        parts["compiler_builtins" if n.startswith("compiler_builtins") else part(n)] += s
    print(f"{total:7d}  code (executable sections)")
    for p, s in sorted(parts.items(), key=lambda kv: -kv[1]):
        print(f"{s:7d}  {p}")
    if top:
        print()
        for n, s in sorted(per_fn.items(), key=lambda kv: -kv[1])[:top]:
            print(f"{s:7d}  {n[:140]}")


if __name__ == "__main__":
    main()
