//! Links the app at the flash/RAM addresses given by `LIBTOCK_PLATFORM` or
//! `LIBTOCK_LINKER_FLASH` / `LIBTOCK_LINKER_RAM` (see the Makefile), and
//! bakes in the SASP key: `ZEPTO_KEY` (32 hex digits), or the demo key
//! 000102...0f when unset. `ZEPTO_VOLATILE_NONCES=1` allows the network side
//! on a board without persistent nonce storage (random start in RAM; see
//! README, "Nonces").
use std::{env, fs, path::PathBuf};

fn main() {
    libtock_build_scripts::auto_layout();
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
    let out = PathBuf::from(env::var("OUT_DIR").expect("OUT_DIR")).join("key.rs");
    println!("cargo:rerun-if-env-changed=ZEPTO_VOLATILE_NONCES");
    let volatile = env::var("ZEPTO_VOLATILE_NONCES").is_ok_and(|v| v == "1");
    fs::write(
        out,
        format!(
            "pub const KEY: [u8; 16] = {bytes:?};\n\
             /// Network side allowed with RAM nonce records (probabilistic).\n\
             pub const VOLATILE_NONCES: bool = {volatile};\n"
        ),
    )
    .expect("write key.rs");
}
