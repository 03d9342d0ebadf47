//! Zepto VM assembler (placeholder until the text assembler lands).

/// Assembles Zepto VM assembly.
pub fn assemble(src: &str) -> Result<Vec<u8>, String> {
    let _ = src;
    Err("the assembler is not part of this build".into())
}
