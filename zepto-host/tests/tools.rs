//! The offline tools of the `zepto` command line, run as a real binary: `asm`,
//! `disasm`, `vm` and `decode`, checked against exact bytes.

use std::io::Write;
use std::process::{Command, Output, Stdio};

use serde_json::Value;
use zepto_kernel::client::{Client, ClientConfig};
use zepto_kernel::heap::HeapMem;
use zepto_kernel::nonce_store::{BlankStart, NonceStore};
use zepto_kernel::sasp::{self, Role, Sasp};
use zepto_kernel::testhal::TestHal;

const KEY: &str = "000102030405060708090a0b0c0d0e0f";
const KEY_BYTES: [u8; 16] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15];

fn zepto(args: &[&str], stdin: Option<&str>) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_zepto"));
    c.args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().expect("run zepto");
    {
        let mut i = child.stdin.take().unwrap();
        if let Some(s) = stdin {
            i.write_all(s.as_bytes()).unwrap();
        }
    }
    child.wait_with_output().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8(o.stderr.clone()).unwrap()
}

fn ok(args: &[&str], stdin: Option<&str>) -> String {
    let o = zepto(args, stdin);
    assert_eq!(o.status.code(), Some(0), "{args:?}: {}", stderr(&o));
    stdout(&o)
}

fn json(args: &[&str], code: i32) -> Value {
    let o = zepto(args, None);
    assert_eq!(o.status.code(), Some(code), "{args:?}: {}", stderr(&o));
    serde_json::from_str(stdout(&o).trim()).expect("one JSON object")
}

/// The worked example of docs/assembly.md: its source block and its hex block.
fn doc_example() -> (String, String) {
    let doc = include_str!("../../docs/assembly.md");
    let block = |fence: &str| {
        let start = doc.find(fence).expect(fence) + fence.len();
        let end = start + doc[start..].find("```").unwrap();
        doc[start..end].trim_start_matches('\n').to_string()
    };
    (block("```zasm\n"), block("```hex\n").trim().to_string())
}

#[test]
fn asm_of_the_documented_example() {
    let (src, hex) = doc_example();
    assert_eq!(
        hex,
        "020200100040020600250200000f260205020402686907049500020401210802"
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("example.zasm");
    std::fs::write(&path, &src).unwrap();
    assert_eq!(ok(&["asm", path.to_str().unwrap()], None).trim(), hex);
    assert_eq!(ok(&["asm", "-"], Some(&src)).trim(), hex);
    assert_eq!(ok(&["asm"], Some(&src)).trim(), hex);
    // The documented `zepto vm` output of the example.
    let doc = include_str!("../../docs/assembly.md");
    let shown = doc
        .split("simulated time and prints:\n\n```\n")
        .nth(1)
        .unwrap()
        .split("```")
        .next()
        .unwrap();
    assert_eq!(ok(&["vm", "--hex", &hex], None), shown);
}

#[test]
fn disasm_of_the_documented_example() {
    let (_, hex) = doc_example();
    let out = ok(&["disasm", &hex], None);
    assert_eq!(
        out,
        "EXEC 1 \"\"            ; 0000\n\
         PUSHEXPR_CONSTANT 2  ; 0003\n\
         EXEC 3 \"\"            ; 0006\n\
         DECANDJMPIF @1 0 -8  ; 0009 -> 0006\n\
         PARALLEL { EXEC 2 \"6869\" } { SLEEP 149; EXEC 2 \"21\" }  ; 0014\n\
         EXIT ISLAST          ; 0030\n"
    );
    // `zepto disasm HEX | zepto asm` gives HEX back.
    assert_eq!(ok(&["asm"], Some(&out)).trim(), hex);
}

/// Every instruction of the VM (and a NaN constant, and bytes that do not decode)
/// goes through `zepto disasm` and `zepto asm` unchanged.
#[test]
fn disasm_then_asm_is_the_identity() {
    let src = "DEVICECAPS 1 2 200\nEXEC -3 \"01\"\nPUSHREPLY \"\"\nSLEEP 70000\nTRANSMITTER 1\n\
               MCUSLEEP 9 TXON MAYDROP\nPOPREPLIES 2\nEXIT ISFIRST PAD 40\n\
               APPENDTOREPLY -1 HALF \"003c\"\nJMP -4\nJMPIFREPLYFIELD_NE 1 UINT,BYTE -5 7\n\
               MOVEREPLYTOFRONT -2\nPUSHEXPR_CONSTANT -0.5\nPUSHEXPR_REPLYFIELD -1 U16\n\
               EXPRUNOP NOT\nEXPRUNOP_EX INC pop@-3\nEXPRUNOP_EX2 MINUS #2.5 ->ins@2\n\
               EXPRBINOP SHL\nEXPRBINOP_EX OR @1 #inf\nEXPRBINOP_EX2 PLUS @1 @2 ->@-1\n\
               JMPIFEXPR_GT 3 -20\nJMPIFEXPR_EX_EQ @2 0.25 4\nCALL 0\nRET\nSWITCH 1=>2 -7=>-9\n\
               SWITCH_EX pop@1 0=>1\nINCANDJMPIF @-1 10 -30\nDECANDJMPIF @2 0 3\n\
               PARALLEL { EXEC 1 \"\"; PARALLEL { } { RET } } { SLEEP 1 }\n";
    let hex = ok(&["asm"], Some(src)).trim().to_string();
    // PUSHEXPR_CONSTANT NaN with a payload (bits 7e01), then bytes that are no
    // instruction.
    let hex = format!("{hex}10017eff00");
    let out = ok(&["disasm", &hex], None);
    let tail: Vec<Vec<&str>> = out
        .lines()
        .skip(29)
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        tail,
        [
            vec![
                ".bytes",
                "\"10017e\"",
                ";",
                "0119",
                "PUSHEXPR_CONSTANT",
                "NaN"
            ],
            vec![".bytes", "\"ff00\"", ";", "0122"]
        ],
        "{out}"
    );
    assert_eq!(ok(&["asm"], Some(&out)).trim(), hex, "{out}");
}

#[test]
fn asm_errors_exit_2_with_line_numbers() {
    let o = zepto(&["asm"], Some("EXEC 1 \"\"\n\nJMP nowhere\n"));
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(
        stderr(&o).trim(),
        "zepto: <stdin>:3: undefined label 'nowhere'"
    );
    let o = zepto(&["asm"], Some("LAUNCH 3\n"));
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("<stdin>:1: unknown mnemonic 'LAUNCH'"));
    let o = zepto(&["asm", "/nonexistent/prog.zasm"], None);
    assert_eq!(o.status.code(), Some(2));
    let o = zepto(&["disasm", "0g"], None);
    assert_eq!(o.status.code(), Some(2));
}

/// A source with several mistakes: every one is reported, each with the file and
/// line, and `zepto send --asm` reports them exactly as `zepto asm` does.
const BAD_SOURCE: &str = "\
start:  EXEC 1 \"\"
        FROB 3                  ; unknown mnemonic
        SLEEP soon              ; bad operand
        JMP nowhere             ; undefined label
start:  EXIT ISLAST             ; label defined twice
        PARALLEL {
            EXEC 2 \"0\"          ; odd hex
        }
        EXEC 1 \"\" 7            ; too many operands
";

const BAD_SOURCE_ERRORS: &str = "\
zepto: F:2: unknown mnemonic 'FROB'
zepto: F:3: bad milliseconds 'soon': expected an integer
zepto: F:4: undefined label 'nowhere'
zepto: F:5: label 'start' is already defined at line 1
zepto: F:7: bad plugin data: bad hex '0': odd number of digits (1)
zepto: F:9: EXEC expects: EXEC BODYPART-ID \"hex\"
";

#[test]
fn asm_and_send_report_every_error_the_same_way() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.zasm");
    std::fs::write(&path, BAD_SOURCE).unwrap();
    let file = path.to_str().unwrap();
    let expected = BAD_SOURCE_ERRORS.replace("F:", &format!("{file}:"));
    let o = zepto(&["asm", file], None);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(stderr(&o), expected);
    let send = |src: &str, stdin: Option<&str>| {
        zepto(
            &[
                "send",
                "--key",
                KEY,
                "--udp",
                "127.0.0.1:9",
                "--state",
                dir.path().join("s").to_str().unwrap(),
                "--asm",
                src,
            ],
            stdin,
        )
    };
    let o = send(file, None);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(stderr(&o), expected);
    // Standard input is "<stdin>" for both.
    let expected = BAD_SOURCE_ERRORS.replace("F:", "<stdin>:");
    let o = zepto(&["asm", "-"], Some(BAD_SOURCE));
    assert_eq!(stderr(&o), expected);
    let o = send("-", Some(BAD_SOURCE));
    assert_eq!(stderr(&o), expected);
}

#[test]
fn vm_ping_echo_const() {
    // EXEC 1 "" (ping) ; EXEC 2 "6869" (echo) ; EXEC 5 "" (const abcd)
    let prog = "0202000204026869020a00";
    let v = json(
        &[
            "vm",
            "--hex",
            prog,
            "--plugin",
            "1=ping",
            "--plugin",
            "2=echo",
            "--plugin",
            "5=const:abcd",
            "--json",
        ],
        0,
    );
    assert_eq!(v["reply"], "050109686909abcd");
    assert_eq!(v["exception"], Value::Null);
    assert_eq!(v["flags"], "ISLAST");
    let bodies: Vec<&str> = v["frames"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            assert_eq!(f["truncated"], false);
            assert_eq!(f["exception"], Value::Null);
            f["body"].as_str().unwrap()
        })
        .collect();
    assert_eq!(bodies, ["01", "6869", "abcd"]);
    // Human form.
    let out = ok(
        &[
            "vm",
            "--hex",
            prog,
            "--plugin",
            "1=ping",
            "--plugin",
            "2=echo",
            "--plugin",
            "5=const:abcd",
        ],
        None,
    );
    assert!(
        out.starts_with("reply:     050109686909abcd (8 bytes, ISLAST)\n"),
        "{out}"
    );
    assert!(out.contains("frame 1:   6869  \"hi\"\n"), "{out}");
}

#[test]
fn vm_exception_exits_4() {
    // EXEC 1 "" (ping) ; EXEC 9 "" (no such body part) at offset 3.
    let prog = "020200021200";
    let v = json(&["vm", "--hex", prog, "--json"], 4);
    // | UNKNOWNBODYPART 16 | position 3 << 1 | frame 05 01 |
    assert_eq!(v["reply"], "10060501");
    assert_eq!(v["exception"]["code"], 16);
    assert_eq!(v["exception"]["position"], 3);
    assert_eq!(v["exception"]["truncated"], false);
    assert_eq!(v["frames"][0]["body"], "01");
    let o = zepto(&["vm", "--hex", prog], None);
    assert_eq!(o.status.code(), Some(4));
    let out = stdout(&o);
    assert!(
        out.contains("exception: UNKNOWNBODYPART (16) at offset 3"),
        "{out}"
    );
    // Level One has no JMP: INVALIDINSTRUCTION at 0.
    let v = json(&["vm", "--hex", "0a00", "--level", "one", "--json"], 4);
    assert_eq!(v["reply"], "0100");
    assert_eq!(v["exception"]["code"], 1);
}

/// A program larger than `zepto vm`'s heap is refused with the limit, which is real:
/// program and reply together fill the heap exactly, one byte more does not fit.
#[test]
fn vm_program_size_limit() {
    // PUSHREPLY "" (a 1-byte reply: an empty frame) then EXIT ISLAST, then filler the
    // program never reaches.
    let program = |size: usize| format!("030008020000{}", "ab".repeat(size - 6));
    let limit = "zepto vm holds at most 4,096 bytes of program and reply together (its heap)";
    let o = zepto(&["vm", "--hex", &program(10_003)], None);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(
        stderr(&o),
        format!("zepto: program of 10,003 bytes; {limit}\n")
    );
    let out = ok(&["vm", "--hex", &program(4095)], None);
    assert!(
        out.starts_with("reply:     01 (1 bytes, ISLAST)\n"),
        "{out}"
    );
    let o = zepto(&["vm", "--hex", &program(4096)], None);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(
        stderr(&o),
        format!("zepto: program of 4,096 bytes; {limit}\n")
    );
}

#[test]
fn vm_time_is_simulated() {
    let hex = ok(&["asm"], Some("SLEEP 5000\nEXEC 1 \"\"\n"));
    let started = std::time::Instant::now();
    let v = json(&["vm", "--hex", hex.trim(), "--json"], 0);
    assert!(started.elapsed().as_secs() < 4);
    assert_eq!(v["reply"], "0501");
    assert_eq!(v["time_ms"], 5000);
}

/// A NEW_PROGRAM packet from a client with `KEY`, as sent on the air.
fn client_packet(program: &[u8]) -> Vec<u8> {
    client_packet_after(0, program)
}

/// A NEW_PROGRAM packet from a client whose last used nonce was `nfs`.
fn client_packet_after(nfs: u64, program: &[u8]) -> Vec<u8> {
    let mut hal = TestHal::<256>::default();
    let cfg = ClientConfig {
        nonce_reserve: 16,
        blank: BlankStart::Floor(nfs),
        ..ClientConfig::default()
    };
    let mut c: Client = Client::new(&KEY_BYTES, &mut hal, cfg).unwrap();
    c.send_program(&mut hal, program).unwrap().to_vec()
}

/// A device packet carrying SAGDP `sagdp_and_saccp` (SASP with the device's flag).
fn device_packet(payload: &[u8]) -> Vec<u8> {
    let mut hal = TestHal::<256>::default();
    let ns = NonceStore::open(&mut hal, 0, 16, [0; 4], BlankStart::Floor(4)).unwrap();
    let mut s: Sasp = Sasp::new(&KEY_BYTES, Role::Device, ns).unwrap();
    let mut heap_mem = HeapMem::<512, 2>::new();
    let mut heap = heap_mem.heap();
    let h = heap.alloc().unwrap();
    heap.set_request(h, payload).unwrap();
    s.send(&mut heap, h, &mut hal).unwrap();
    heap.reply(h).unwrap().to_vec()
}

fn hexs(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[test]
fn decode_client_packet_shows_program() {
    let (_, prog) = doc_example();
    let program: Vec<u8> = (0..prog.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&prog[i..i + 2], 16).unwrap())
        .collect();
    let pkt = client_packet(&program);
    assert_eq!(pkt.len(), sasp::packet_len(1 + 7 + 1 + program.len()));
    let out = ok(&["decode", "--key", KEY, &hexs(&pkt)], None);
    assert!(
        out.contains("nonce VP 1, destination SAGDP (flag 0)"),
        "{out}"
    );
    assert!(
        out.contains("EAX with the client's peer flag 1: authentic"),
        "{out}"
    );
    assert!(
        out.contains("status first; chain id 0x800000000001 (nonce 1 of the client)"),
        "{out}"
    );
    assert!(out.contains("command NEW_PROGRAM (type 2)"), "{out}");
    assert!(
        out.contains("  DECANDJMPIF @1 0 -8  ; 0009 -> 0006\n"),
        "{out}"
    );
    assert!(
        out.contains("  PARALLEL { EXEC 2 \"6869\" } { SLEEP 149; EXEC 2 \"21\" }  ; 0014\n"),
        "{out}"
    );

    let v = json(&["decode", "--key", KEY, "--json", &hexs(&pkt)], 0);
    assert_eq!(v["sadlp"], Value::Null);
    assert_eq!(v["sasp"]["nonce"], 1);
    assert_eq!(v["sasp"]["authentic"], true);
    assert_eq!(v["sagdp"]["status"], "first");
    assert_eq!(v["sagdp"]["id"], 0x8000_0000_0001u64);
    assert_eq!(v["saccp"]["type"], "NEW_PROGRAM");
    assert_eq!(v["saccp"]["program"], prog);
    assert_eq!(v["saccp"]["disassembly"][3], "DECANDJMPIF @1 0 -8");
    // The payload is the SAGDP packet: first, chain id, then SACCP 02 + program.
    assert_eq!(
        v["sasp"]["payload"].as_str().unwrap(),
        // first, chain id 01 00 00 00 00 80, NEW_PROGRAM
        format!("01{}02{prog}", "010000000080")
    );
}

#[test]
fn decode_sadlp_frame() {
    let pkt = client_packet(&[0x02, 0x02, 0x00]);
    let mut frame = vec![0u8; zepto_kernel::sadlp::encoded_len(pkt.len())];
    let n = zepto_kernel::sadlp::encode(&pkt, &mut frame).unwrap();
    frame.truncate(n);
    let v = json(&["decode", "--key", KEY, "--json", &hexs(&frame)], 0);
    assert_eq!(v["sadlp"]["cobs"], "ok");
    assert_eq!(v["sadlp"]["crc_ok"], true);
    assert_eq!(v["sadlp"]["packet"], hexs(&pkt));
    assert_eq!(v["saccp"]["disassembly"][0], "EXEC 1 \"\"");
    // A flipped bit inside the frame: CRC (or COBS) check fails, exit 4.
    let mut bad = frame.clone();
    bad[5] ^= 0x01;
    if bad[5] == 0 {
        bad[5] = 0x80;
    }
    let o = zepto(&["decode", "--key", KEY, &hexs(&bad)], None);
    assert_eq!(o.status.code(), Some(4));
    assert!(stderr(&o).contains("SADLP"), "{}", stderr(&o));
    // No closing delimiter: not a frame at all (exit 2), and as a bare SASP packet
    // it does not authenticate (exit 4).
    let cut = hexs(&frame[..n - 1]);
    let o = zepto(&["decode", "--key", KEY, "--link", "serial", &cut], None);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("without its closing 00"),
        "{}",
        stderr(&o)
    );
    let o = zepto(&["decode", "--key", KEY, &cut], None);
    assert_eq!(o.status.code(), Some(4));
    assert!(
        stderr(&o).contains("neither reading checks out"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn decode_device_replies() {
    // Terminating reply to the client's packet 1: SACCP OK with frame "01".
    let ppid = sasp::packet_id(1, 1);
    let mut p = vec![0x02];
    p.extend_from_slice(&ppid);
    p.extend_from_slice(&[0x20, 0x05, 0x01]);
    let pkt = device_packet(&p);
    let out = ok(
        &["decode", "--key", KEY, "--from", "device", &hexs(&pkt)],
        None,
    );
    assert!(out.contains("nonce VP 5"), "{out}");
    assert!(
        out.contains("status terminating; PPID 0x800000000001 (nonce 1 of the client)"),
        "{out}"
    );
    assert!(out.contains("reply OK, 2 bytes: 0501"), "{out}");
    assert!(out.contains("frame 0:   01\n"), "{out}");
    // The same bytes as from the client do not authenticate.
    let o = zepto(&["decode", "--key", KEY, &hexs(&pkt)], None);
    assert_eq!(o.status.code(), Some(4));

    // EXCEPTION: UNKNOWNBODYPART at 3, reply buffer frame "01".
    let mut p = vec![0x02];
    p.extend_from_slice(&ppid);
    // EXCEPTION head: type 2, IS-EXCEPTION, size 4 << 5 (an Encoded-Unsigned-Int).
    let (head, n) = zepto_kernel::encoding::uint_to_array(2 | 8 | 4 << 5, 2).unwrap();
    p.extend_from_slice(&head[..n]);
    p.extend_from_slice(&[0x10, 0x06, 0x05, 0x01]);
    let v = json(
        &[
            "decode",
            "--key",
            KEY,
            "--from",
            "device",
            "--json",
            &hexs(&device_packet(&p)),
        ],
        0,
    );
    assert_eq!(v["saccp"]["type"], "EXCEPTION");
    assert_eq!(v["saccp"]["exception"]["code"], 16);
    assert_eq!(v["saccp"]["exception"]["name"], "UNKNOWNBODYPART");
    assert_eq!(v["saccp"]["exception"]["position"], 3);
    assert_eq!(v["saccp"]["frames"][0]["body"], "01");

    // ERROR OLD_PROGRAM_CHECKSUM_DOESNT_MATCH.
    let mut p = vec![0x02];
    p.extend_from_slice(&ppid);
    p.push(0x22);
    let out = ok(
        &[
            "decode",
            "--key",
            KEY,
            "--from",
            "device",
            &hexs(&device_packet(&p)),
        ],
        None,
    );
    assert!(
        out.contains("reply ERROR OLD_PROGRAM_CHECKSUM_DOESNT_MATCH (2)"),
        "{out}"
    );
}

#[test]
fn decode_wrong_key_and_bad_input() {
    let pkt = hexs(&client_packet(&[0x02, 0x02, 0x00]));
    let o = zepto(&["decode", "--key", &"ff".repeat(16), &pkt], None);
    assert_eq!(o.status.code(), Some(4));
    assert!(
        stderr(&o).contains("authentication failed (wrong key or corrupted packet"),
        "{}",
        stderr(&o)
    );
    assert!(stdout(&o).contains("AUTHENTICATION FAILED"));
    let v = json(&["decode", "--key", &"ff".repeat(16), "--json", &pkt], 4);
    assert_eq!(v["sasp"]["authentic"], false);
    assert!(v["error"]
        .as_str()
        .unwrap()
        .starts_with("authentication failed"));
    // Bad hex, bad key, too short: exit 2.
    assert_eq!(
        zepto(&["decode", "--key", KEY, "0x12zz"], None)
            .status
            .code(),
        Some(2)
    );
    assert_eq!(
        zepto(&["decode", "--key", "0011", &pkt], None)
            .status
            .code(),
        Some(2)
    );
    let o = zepto(&["decode", "--key", KEY, "0102030405"], None);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("too short"), "{}", stderr(&o));
}

/// A UDP datagram whose SASP header starts with `00` (nonce 256, as every nonce that
/// is a multiple of 256) is a packet, not a SADLP frame: `--link udp` says so, and
/// without `--link` decode tries both and says which matched.
#[test]
fn decode_udp_capture_starting_with_00() {
    let program = [0x02, 0x02, 0x00];
    let pkt = client_packet_after(255, &program);
    assert_eq!(pkt[..6], [0, 1, 0, 0, 0, 0], "nonce VP 256");
    let hex = hexs(&pkt);

    let out = ok(&["decode", "--key", KEY, "--link", "udp", &hex], None);
    assert!(
        out.starts_with("SADLP   none: --link udp carries bare SASP packets\n"),
        "{out}"
    );
    assert!(out.contains("nonce VP 256, destination SAGDP"), "{out}");
    assert!(out.contains("authentic"), "{out}");
    assert!(out.contains("command NEW_PROGRAM"), "{out}");

    // Without --link: SADLP first (it starts with 00), then SASP, which matches.
    let out = ok(&["decode", "--key", KEY, &hex], None);
    assert!(
        out.starts_with("SADLP   none: a bare SASP packet, as UDP carries it (as a SADLP frame: "),
        "{out}"
    );
    assert!(out.contains("command NEW_PROGRAM"), "{out}");
    let v = json(&["decode", "--key", KEY, "--json", &hex], 0);
    assert_eq!(v["framing"], "none");
    assert!(
        v["sadlp_error"].as_str().unwrap().starts_with("SADLP: "),
        "{v}"
    );
    assert_eq!(v["sasp"]["nonce"], 256);
    assert_eq!(v["saccp"]["program"], "020200");

    // Read as a frame (--link serial), it is not one, and decode says why.
    let o = zepto(&["decode", "--key", KEY, "--link", "serial", &hex], None);
    assert_ne!(o.status.code(), Some(0));
    assert!(stderr(&o).contains("SADLP"), "{}", stderr(&o));
    assert!(stderr(&o).contains("--link udp"), "{}", stderr(&o));

    // The same packet in a SADLP frame: without --link the frame matches.
    let mut frame = vec![0u8; zepto_kernel::sadlp::encoded_len(pkt.len())];
    let n = zepto_kernel::sadlp::encode(&pkt, &mut frame).unwrap();
    frame.truncate(n);
    let v = json(&["decode", "--key", KEY, "--json", &hexs(&frame)], 0);
    assert_eq!(v["framing"], "sadlp");
    assert_eq!(v["sadlp"]["packet"], hex);
    assert_eq!(v["sasp"]["nonce"], 256);
    let v = json(
        &[
            "decode",
            "--key",
            KEY,
            "--json",
            "--link",
            "tcp",
            &hexs(&frame),
        ],
        0,
    );
    assert_eq!(v["sadlp"]["crc_ok"], true);

    // Neither a frame nor a packet with this key: both reasons, exit 4.
    let o = zepto(&["decode", "--key", &"ff".repeat(16), &hex], None);
    assert_eq!(o.status.code(), Some(4));
    let err = stderr(&o);
    assert!(err.contains("as a SADLP frame: frame too short"), "{err}");
    assert!(
        err.contains("as a bare SASP packet: authentication failed"),
        "{err}"
    );
}
