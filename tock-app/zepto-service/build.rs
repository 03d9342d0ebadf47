//! Links the app at the flash/RAM addresses given by `LIBTOCK_PLATFORM` or
//! `LIBTOCK_LINKER_FLASH` / `LIBTOCK_LINKER_RAM` (see the Makefile), with the
//! stack in RAM only (`scripts/stack_layout.rs`), and writes `config.rs`:
//!
//! * the SASP key: `ZEPTO_KEY` (32 hex digits), or the demo key 000102...0f
//!   when unset;
//! * `ZEPTO_VOLATILE_NONCES=1` allows the network side on a board without
//!   persistent nonce storage (random start in RAM; see README, "Nonces");
//! * the stack size: `ZEPTO_SERVICE_STACK` bytes (the Makefile passes its
//!   `SERVICE_STACK`, which it also gives to elf2tab), 6144 when unset.
use std::{env, fs, path::PathBuf};

include!("../scripts/stack_layout.rs");

/// Stack size when `ZEPTO_SERVICE_STACK` is unset (the Makefile's default).
const DEFAULT_STACK: usize = 6144;

fn main() {
    libtock_build_scripts::auto_layout();
    stack_in_ram_only();
    println!("cargo:rerun-if-env-changed=ZEPTO_KEY");
    let hex = env::var("ZEPTO_KEY")
        .ok()
        .filter(|k| !k.is_empty())
        .unwrap_or_else(|| "000102030405060708090a0b0c0d0e0f".into());
    let bytes: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2).unwrap_or("zz"), 16))
        .collect::<Result<_, _>>()
        .unwrap_or_default();
    assert!(bytes.len() == 16, "ZEPTO_KEY must be 32 hex digits");
    println!("cargo:rerun-if-env-changed=ZEPTO_VOLATILE_NONCES");
    let volatile = env::var("ZEPTO_VOLATILE_NONCES").is_ok_and(|v| v == "1");
    println!("cargo:rerun-if-env-changed=ZEPTO_SERVICE_STACK");
    let stack = match env::var("ZEPTO_SERVICE_STACK") {
        Ok(v) if !v.is_empty() => v
            .parse::<usize>()
            .ok()
            .filter(|s| *s >= 1024 && s % 16 == 0)
            .expect("ZEPTO_SERVICE_STACK must be a multiple of 16, at least 1024 (bytes, decimal)"),
        _ => DEFAULT_STACK,
    };
    let out = PathBuf::from(env::var("OUT_DIR").expect("OUT_DIR")).join("config.rs");
    fs::write(
        out,
        format!(
            "/// The SASP key.\n\
             pub const KEY: [u8; 16] = {bytes:?};\n\
             /// Network side allowed with RAM nonce records (probabilistic).\n\
             pub const VOLATILE_NONCES: bool = {volatile};\n\
             /// Bytes of stack (`stack_size!`; the TBF's `--stack` is the same).\n\
             pub const STACK_SIZE: usize = {stack};\n"
        ),
    )
    .expect("write config.rs");
}
