#!/bin/sh
# Turns a local libtock-rs checkout into a cargo directory source, so the
# Tock apps build without network access:
#
#   scripts/vendor-libtock.sh <libtock-rs checkout> <output folder>
#   make LIBTOCK_RS_VENDOR=<output folder>
#
# The checkout must be at the revision pinned in Cargo.toml (the script
# warns otherwise). `cargo vendor` cannot do this: it tries to fetch
# libtock-rs's `tock` submodule. Each `libtock*` crate gets a folder of its
# own named after the crate, with `rust-version.workspace = true` replaced
# by the workspace's value (a vendored crate has no workspace) and a
# `.cargo-checksum.json` without checksums.
set -eu

usage() { echo "usage: $0 <libtock-rs checkout> <output folder>" >&2; exit 2; }
[ $# -eq 2 ] || usage
src=$1
out=$2
[ -f "$src/Cargo.toml" ] && [ -d "$src/platform" ] || {
    echo "$0: $src is not a libtock-rs checkout" >&2; exit 1; }

here=$(cd "$(dirname "$0")/.." && pwd)
want=$(sed -n 's/.*libtock-rs", rev = "\([0-9a-f]*\)".*/\1/p' "$here/Cargo.toml" | head -n 1)
have=$(git -C "$src" rev-parse HEAD 2>/dev/null || echo unknown)
[ "$have" = "$want" ] || echo "$0: warning: checkout is at $have, Cargo.toml pins $want" >&2

# The workspace's rust-version (under [workspace.package] of the root manifest).
msrv=$(sed -n '/^\[workspace.package\]/,/^\[/s/^rust-version *= *"\(.*\)"/\1/p' "$src/Cargo.toml")
[ -n "$msrv" ] || { echo "$0: no [workspace.package] rust-version in $src/Cargo.toml" >&2; exit 1; }

mkdir -p "$out"
n=0
for manifest in $(cd "$src" && find . -name Cargo.toml -not -path './target/*' -not -path './tock/*'); do
    dir=$(dirname "$manifest")
    name=$(sed -n 's/^name *= *"\(.*\)"/\1/p' "$src/$manifest" | head -n 1)
    case $name in libtock | libtock_*) ;; *) continue ;; esac
    dest=$out/$name
    rm -rf "$dest"
    mkdir -p "$dest"
    if [ "$dir" = . ]; then
        # The root crate: its own files only, not the other crates below it.
        cp "$src/Cargo.toml" "$dest/"
        for f in build.rs src README.md LICENSE-APACHE LICENSE-MIT; do
            [ -e "$src/$f" ] && cp -R "$src/$f" "$dest/"
        done
    else
        cp -R "$src/$dir/." "$dest/"
    fi
    sed -i "s/^rust-version\.workspace *= *true/rust-version = \"$msrv\"/" "$dest/Cargo.toml"
    printf '{"files":{},"package":null}\n' > "$dest/.cargo-checksum.json"
    n=$((n + 1))
done
echo "$n crates in $out (rust-version $msrv)"
