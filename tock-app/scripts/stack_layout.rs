// Included by the apps' build.rs files, after `libtock_build_scripts::auto_layout()`.

/// Keeps the stack out of the app's flash image.
///
/// libtock-rs's linker layout (`libtock_layout.ld`, which `auto_layout` writes
/// to `OUT_DIR`) places the `.stack` section in RAM with a load address in
/// flash (`} > RAM AT > FLASH`). The stack holds no data, but `.data` follows
/// it in the same RAM segment, so the linker writes the whole stack into the
/// ELF file as zeros, and elf2tab copies them into the TBF (8 KiB of zeros for
/// an 8 KiB stack) and counts them again in the TBF's minimum RAM on top of
/// `--stack`. With the stack in RAM only, its segment has no file bytes: the
/// TBF holds code, read-only data and `.data`, and its minimum RAM is `--stack`
/// (the same size as the `.stack` section) plus the heaps and `.data`/`.bss`.
fn stack_in_ram_only() {
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR"));
    let path = out.join("libtock_layout.ld");
    let text = std::fs::read_to_string(&path).expect("libtock_layout.ld in OUT_DIR");
    let start = text
        .find(".stack (NOLOAD)")
        .expect("libtock_layout.ld has a `.stack (NOLOAD)` section");
    const FROM: &str = "} > RAM AT > FLASH";
    let at = start
        + text[start..]
            .find(FROM)
            .expect("the `.stack` section ends with `} > RAM AT > FLASH`");
    let patched = format!("{}}} > RAM{}", &text[..at], &text[at + FROM.len()..]);
    std::fs::write(&path, patched).expect("write libtock_layout.ld");
}
