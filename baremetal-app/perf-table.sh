#!/usr/bin/env bash
# The instruction rows of docs/size.md's targets table: runs perf-trace.sh RUNS times
# (default 3) for each configuration and prints, per configuration, the lowest
# round-trip total and the range of the "process" part over the runs (the receive
# part varies with QEMU's timing, the process part far less).
# Usage: baremetal-app/perf-table.sh [RUNS [CONFIG...]]
#        CONFIG is "vm-one", "vm-small", "vm-medium", with ",speck" for Speck
#        (default: all six)
set -euo pipefail
cd "$(dirname "$0")"
runs=${1:-3}
[ "$runs" -ge 1 ] 2>/dev/null || { echo "usage: $0 [RUNS [CONFIG...]]" >&2; exit 2; }
shift $(($# > 0 ? 1 : 0))
configs=("$@")
[ ${#configs[@]} -gt 0 ] ||
    configs=(vm-one vm-small vm-medium vm-one,speck vm-small,speck vm-medium,speck)

printf '| configuration | lowest total | process part (range) | totals of the runs |\n'
printf '|---|---:|---|---|\n'
for c in "${configs[@]}"; do
    totals=() procs=()
    for _ in $(seq "$runs"); do
        out=$(bash perf-trace.sh ${c//,/ })
        totals+=("$(printf '%s\n' "$out" | sed -n 's/^cheapest round trip.*: \([0-9]*\) instructions$/\1/p')")
        procs+=("$(printf '%s\n' "$out" | sed -n 's/^  process (up the stack.*: *\([0-9]*\)$/\1/p')")
    done
    lo=$(printf '%s\n' "${totals[@]}" | sort -n | head -n 1)
    plo=$(printf '%s\n' "${procs[@]}" | sort -n | head -n 1)
    phi=$(printf '%s\n' "${procs[@]}" | sort -n | tail -n 1)
    printf '| %s | %s | %s-%s | %s |\n' "$c" "$lo" "$plo" "$phi" "${totals[*]}"
done
