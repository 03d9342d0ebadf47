//! Puts memory.x where the linker finds it and names the configuration.
use std::{env, fs, path::PathBuf};

fn main() {
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("OUT_DIR"));
    fs::copy("memory.x", out.join("memory.x")).expect("copy memory.x");
    println!("cargo:rustc-link-search={}", out.display());
    println!("cargo:rerun-if-changed=memory.x");
    println!("cargo:rerun-if-changed=build.rs");
    let on = |f: &str| env::var_os(format!("CARGO_FEATURE_{f}")).is_some();
    let vm = if on("VM_ONLY") {
        "vm-only"
    } else if on("VM_MEDIUM") {
        "vm-medium"
    } else if on("VM_SMALL") {
        "vm-small"
    } else {
        "vm-one"
    };
    let cipher = if on("SPECK") {
        "speck"
    } else if on("HW_AES") {
        "aes-ecb"
    } else {
        "aes"
    };
    let big = if on("BIG") { " big" } else { "" };
    println!("cargo:rustc-env=ZEPTO_CONFIG_NAME={vm} {cipher}{big}");
}
