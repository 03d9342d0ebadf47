# Sourced by qemu-test.sh, size-report.sh and perf-trace.sh (run from baremetal-app/).
# Cargo decides where the firmware goes (CARGO_TARGET_DIR, build.target-dir, or
# ./target), so ask it rather than assume a path.

# Builds the firmware in release with the cargo features $1 (no defaults) and prints
# the path of the ELF cargo made.
build_firmware() {
    local json exe
    json=$(nice -n 10 cargo build --release --quiet --no-default-features --features "$1" \
        --message-format=json-render-diagnostics)
    exe=$(printf '%s\n' "$json" | sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' | tail -n 1)
    if [ -z "$exe" ] || [ ! -f "$exe" ]; then
        echo "cargo build --features $1 reported no firmware executable" >&2
        return 1
    fi
    printf '%s\n' "$exe"
}

# Prints cargo's target directory for this package.
target_dir() {
    cargo metadata --format-version 1 --no-deps |
        sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p'
}
