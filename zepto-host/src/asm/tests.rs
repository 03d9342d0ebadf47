//! Unit tests of the assembler.

use super::*;
use zepto_kernel::vm::insn::{Instruction, Threads};

fn asm(s: &str) -> Vec<u8> {
    assemble(s).unwrap_or_else(|e| panic!("{e}\n{s}"))
}

/// The first error of `s` (by line).
fn asm_err(s: &str) -> AsmError {
    assemble(s).expect_err("should fail").0.remove(0)
}

/// Every error of `s`: (line, message).
fn asm_errs(s: &str) -> Vec<(usize, String)> {
    let e = assemble(s).expect_err("should fail");
    e.0.into_iter().map(|e| (e.line, e.message)).collect()
}

#[test]
fn every_error_is_reported() {
    let errs = asm_errs(
        "FROB\nEXEC 1 \"\"\nSLEEP x\nJMP a\nJMP b\nc:\nc: EXEC 1 \"0\"\n}\nEXEC 1 \"\" {\n} \nCALL d",
    );
    let lines: Vec<usize> = errs.iter().map(|e| e.0).collect();
    assert_eq!(lines, [1, 3, 4, 5, 7, 7, 8, 9, 11], "{errs:?}");
    assert_eq!(errs[2].1, "undefined label 'a'");
    assert_eq!(errs[4].1, "label 'c' is already defined at line 6");
    assert!(errs[5].1.starts_with("bad plugin data"), "{errs:?}");
    assert_eq!(errs[6].1, "'}' without an open PARALLEL block");
    assert!(errs[7].1.starts_with("'{' outside PARALLEL"), "{errs:?}");
    assert_eq!(errs[8].1, "undefined label 'd'");
    // Inside PARALLEL blocks too, and an unterminated string does not hide the rest.
    let errs = asm_errs("PARALLEL {\nEXEC 1 \"01\nBAD\n} {\nJMP x\n}\nEXIT MAYBE");
    let lines: Vec<usize> = errs.iter().map(|e| e.0).collect();
    assert_eq!(lines, [2, 3, 5, 7], "{errs:?}");
}

#[test]
fn layout_errors_only_once_every_statement_parsed() {
    // With FROB gone, `f` would be the end of the program: no CALL error claimed.
    assert_eq!(
        asm_errs("CALL f\nEXIT ISLAST\nf: FROB"),
        [(3, "unknown mnemonic 'FROB'".to_string())]
    );
    // Parsed, the same mistake is a layout error.
    let errs = asm_errs("CALL f\nEXIT ISLAST\nf:");
    assert_eq!(errs.len(), 1);
    assert!(errs[0].1.starts_with("CALL out of range"), "{errs:?}");
}

#[test]
fn simple_program() {
    assert_eq!(
        asm("EXEC 1 \"\"\nEXEC 2 \"6869\" ; echo\n\nEXIT ISLAST\n"),
        vec![0x02, 0x02, 0x00, 0x02, 0x04, 0x02, 0x68, 0x69, 0x08, 0x02]
    );
}

#[test]
fn backward_and_forward_labels() {
    // loop = 3; DECANDJMPIF (6 bytes) at 6 ends at 12 -> delta -8; JMP 3 skips EXEC 2.
    let code = asm(
        "PUSHEXPR_CONSTANT 3\nloop: EXEC 1 \"\"\nDECANDJMPIF @1 0 loop\nJMP end\nEXEC 2 \"\"\nend:",
    );
    let numeric = asm("PUSHEXPR_CONSTANT 3\nEXEC 1 \"\"\nDECANDJMPIF @1 0 -8\nJMP 3\nEXEC 2 \"\"");
    assert_eq!(code, numeric);
    assert_eq!(
        disassemble(&code),
        "PUSHEXPR_CONSTANT 3\nEXEC 1 \"\"\nDECANDJMPIF @1 0 -8\nJMP 3\nEXEC 2 \"\"\n"
    );
}

#[test]
fn call_label_is_absolute() {
    let code = asm("CALL f\nEXIT ISLAST\nf: EXEC 1 \"\"\nRET");
    assert_eq!(&code[..2], &[0x20, 0x04]);
}

#[test]
fn switch_labels() {
    let code = asm("PUSHEXPR_CONSTANT 2\nSWITCH 1=>one 2=>two\none: EXEC 1 \"\"\ntwo: EXEC 2 \"\"");
    let d = disassemble(&code);
    // SWITCH (6 bytes) at 3 ends at 9 = one; two = 12.
    assert_eq!(
        d,
        "PUSHEXPR_CONSTANT 2\nSWITCH 1=>0 2=>3\nEXEC 1 \"\"\nEXEC 2 \"\"\n"
    );
}

#[test]
fn long_jumps_settle() {
    // A backward jump over more than 63 bytes needs a 2-byte delta.
    let mut s = String::from("top:\n");
    for _ in 0..40 {
        s.push_str("EXEC 1 \"\"\n");
    }
    s.push_str("JMP top\n");
    let code = asm(&s);
    let jmp = &code[120..];
    let (i, n) = Instruction::decode(jmp).unwrap();
    assert_eq!(n, jmp.len());
    assert_eq!(
        i,
        Instruction::Jmp {
            delta: -(code.len() as i16)
        }
    );
}

#[test]
fn parallel_forms_agree() {
    let one = asm("PARALLEL { EXEC 1 \"\"; PUSHEXPR_CONSTANT 1 } { EXEC 2 \"\" }");
    let multi = asm(
        "PARALLEL {        ; first thread\n  EXEC 1 \"\"\n  PUSHEXPR_CONSTANT 1\n} {\n  EXEC 2 \"\" ; second\n}\n",
    );
    assert_eq!(one, multi);
    assert_eq!(
        one,
        vec![0x26, 0x02, 0x06, 0x02, 0x02, 0x00, 0x10, 0x00, 0x3c, 0x03, 0x02, 0x04, 0x00]
    );
    assert_eq!(
        disassemble(&one),
        "PARALLEL { EXEC 1 \"\"; PUSHEXPR_CONSTANT 1 } { EXEC 2 \"\" }\n"
    );
}

#[test]
fn labels_local_to_threads() {
    let code = asm(
        "PARALLEL {\nagain: EXEC 1 \"\"\nJMPIFREPLYFIELD_LT -1 BYTE 1 again\n} {\nagain: EXEC 2 \"\"\n}\nEXIT ISLAST",
    );
    let d = disassemble(&code);
    assert!(
        d.starts_with("PARALLEL { EXEC 1 \"\"; JMPIFREPLYFIELD_LT -1 BYTE 1 -9 }"),
        "{d}"
    );
    // A jump from a thread to a label outside it is refused.
    let e = asm_err("out:\nPARALLEL {\nJMP out\n}");
    assert_eq!(e.line, 3);
    assert!(e.message.contains("outside its pseudo-thread"), "{e}");
}

#[test]
fn errors_have_lines() {
    let e = asm_err("EXEC 1 \"\"\nFROB 3");
    assert_eq!((e.line, e.message.as_str()), (2, "unknown mnemonic 'FROB'"));
    let e = asm_err("\n\nJMP nowhere");
    assert_eq!(
        (e.line, e.message.as_str()),
        (3, "undefined label 'nowhere'")
    );
    let e = asm_err("SLEEP x");
    assert!(e.message.contains("bad milliseconds 'x'"), "{e}");
    let e = asm_err("EXEC 99999 \"\"");
    assert!(e.message.contains("out of range"), "{e}");
    let e = asm_err("a:\na:");
    assert_eq!(e.line, 2);
    assert!(e.message.contains("already defined at line 1"));
    let e = asm_err("PARALLEL {\nEXEC 1 \"\"");
    assert_eq!(e.line, 1);
    let e = asm_err("}");
    assert!(e.message.contains("without an open"));
    let e = asm_err("APPENDTOREPLY -1 U16 \"01\"");
    assert!(e.message.contains("not one U16 field"), "{e}");
    let e = asm_err("EXPRUNOP_EX MINUS @0");
    assert!(e.message.contains("must not be 0"), "{e}");
    let e = asm_err("PUSHEXPR_CONSTANT 70000");
    assert!(e.message.contains("half-float range"), "{e}");
    let e = asm_err("EXEC 1 \"01");
    assert!(e.message.contains("unterminated"), "{e}");
}

#[test]
fn jump_out_of_program() {
    let e = asm_err("JMP after\nPARALLEL {\nafter: EXEC 1 \"\"\n}");
    assert!(e.message.contains("undefined label"), "{e}");
    let e = asm_err("CALL end\nEXEC 1 \"\"\nend:");
    assert!(e.message.contains("CALL out of range"), "{e}");
}

#[test]
fn bytes_directive_and_undecodable_tail() {
    let code = asm("EXEC 1 \"\"\n.bytes \"ff00\"");
    assert_eq!(code, vec![2, 2, 0, 0xff, 0]);
    assert_eq!(disassemble(&code), "EXEC 1 \"\"\n.bytes \"ff00\"\n");
    assert_eq!(asm(&disassemble(&code)), code);
}

#[test]
fn listing_offsets_and_targets() {
    let code = asm("top: EXEC 1 \"\"\nJMP top");
    let l = listing(&code);
    assert_eq!(l.len(), 2);
    assert_eq!((l[1].offset, l[1].targets.clone()), (3, vec![0]));
}

mod props {
    use super::*;
    use proptest::prelude::*;

    fn roundtrip(bytes: &[u8]) -> Result<(), TestCaseError> {
        let Ok((i, n)) = Instruction::decode(bytes) else {
            return Ok(());
        };
        let text = i.to_string();
        // NaN payloads cannot be written in assembly.
        prop_assume!(!text.contains("NaN"));
        let mut buf = vec![0u8; bytes.len() + 16];
        let k = i
            .encode(&mut buf)
            .expect("kernel re-encodes what it decoded");
        prop_assert_eq!(&buf[..k], &bytes[..n]);
        let back = assemble(&text).map_err(|e| TestCaseError::fail(format!("{e}: {text}")))?;
        prop_assert_eq!(&back[..], &bytes[..n], "{}", text);
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4000))]

        /// decode -> Display -> assemble gives the kernel's bytes, for every opcode.
        #[test]
        fn display_assembles_back(op in 1u8..=0x26, tail in proptest::collection::vec(any::<u8>(), 0..24)) {
            let mut bytes = vec![op];
            bytes.extend(tail);
            roundtrip(&bytes)?;
        }

        /// PARALLEL bodies made of real instructions (and trailing garbage).
        #[test]
        fn parallel_bodies(bodies in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..20), 1..4), ops in proptest::collection::vec(1u8..=0x26, 4)) {
            let mut refs = Vec::new();
            let mut owned = Vec::new();
            for (b, op) in bodies.iter().zip(ops) {
                let mut v = vec![op];
                v.extend(b);
                owned.push(v);
            }
            for v in &owned { refs.push(v.as_slice()); }
            let mut raw = vec![0u8; 200];
            let n = Threads::encode_into(&refs, &mut raw).unwrap();
            let t = Threads::from_raw(refs.len() as u16, &raw[..n]).unwrap();
            let mut buf = vec![0u8; 256];
            let k = Instruction::Parallel { threads: t }.encode(&mut buf).unwrap();
            roundtrip(&buf[..k])?;
        }

        /// Whole programs: disassemble -> assemble is the identity.
        #[test]
        fn programs(code in proptest::collection::vec(any::<u8>(), 0..64)) {
            let text = disassemble(&code);
            prop_assume!(!text.contains("NaN"));
            let back = assemble(&text).map_err(|e| TestCaseError::fail(format!("{e}: {text}")))?;
            prop_assert_eq!(back, code);
        }

        /// The assembler never panics on arbitrary text.
        #[test]
        fn no_panic(s in "[ -~\n]{0,80}") {
            let _ = assemble(&s);
        }
    }
}
