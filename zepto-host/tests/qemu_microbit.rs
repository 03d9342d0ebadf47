//! The bare-metal micro:bit firmware (`baremetal-app/`) in QEMU's `microbit` machine:
//! a client sends programs over the emulated UART (SADLP frames on a TCP socket) and
//! checks the exact replies.
//!
//! The test builds nothing: it needs the firmware ELF in `ZEPTO_MICROBIT_ELF` (a
//! release build of the default VM-Small configuration) and `qemu-system-arm` on the
//! PATH, and is skipped without them. `baremetal-app/qemu-test.sh` builds the
//! firmware and runs it. With `--features speck-firmware` (which turns on the
//! kernel's `speck`) it expects a firmware built with `--features speck`.

use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use zepto_host::link::{Link, StreamLink};
use zepto_kernel::client::{Client, ClientConfig, ClientEvent};
use zepto_kernel::heap::{Handle, Heap};
use zepto_kernel::nonce_store::BlankStart;
use zepto_kernel::saccp::client::{self as saccp_client, Reply};
use zepto_kernel::saccp::{ErrorCode, ExtraHeaders};
use zepto_kernel::sasp::DefaultCipher;
use zepto_kernel::testhal::TestHal;
use zepto_kernel::vm::insn::Instruction;
use zepto_kernel::vm::reply;
use zepto_kernel::vm::{caps, ExceptionCode, Level};

const KEY: [u8; 16] = *b"zepto-test-key!!";

/// QEMU, killed when the test ends.
struct Qemu(Child);

impl Drop for Qemu {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn program(insns: &[Instruction<'_>]) -> Vec<u8> {
    let mut out = Vec::new();
    for i in insns {
        let mut buf = [0u8; 80];
        let n = i.encode(&mut buf).unwrap();
        out.extend_from_slice(&buf[..n]);
    }
    out
}

struct Session {
    link: StreamLink,
    client: Client<DefaultCipher, 1024, 4>,
    hal: TestHal<256>,
    start: Instant,
}

impl Session {
    /// Sends `prog` and waits for the device's SACCP reply (resending on SAGDP's
    /// timer).
    fn command(&mut self, prog: &[u8]) -> Vec<u8> {
        self.command_with(|heap, h| {
            saccp_client::build_new_program(heap, h, &ExtraHeaders::default(), prog)
        })
    }

    /// Sends the SACCP command `build` writes and waits for the device's reply.
    fn command_with(
        &mut self,
        build: impl FnOnce(&mut Heap<'_>, Handle) -> Result<(), zepto_kernel::Error>,
    ) -> Vec<u8> {
        self.hal.now_ms = self.start.elapsed().as_millis() as u64;
        let p = self
            .client
            .send_command(&mut self.hal, build)
            .unwrap()
            .to_vec();
        self.link.send(&p).unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            let got = self.link.recv(Some(Duration::from_millis(50))).unwrap();
            self.hal.now_ms = self.start.elapsed().as_millis() as u64;
            if let Some((p, _)) = got {
                match self.client.receive(&mut self.hal, &p).unwrap() {
                    ClientEvent::Reply => return self.client.reply().to_vec(),
                    ClientEvent::Send => {
                        let out = self.client.outgoing().to_vec();
                        self.link.send(&out).unwrap();
                    }
                    ClientEvent::Resync => {
                        let out = self.client.outgoing().to_vec();
                        self.link.send(&out).unwrap();
                        if let Some(p) = self.client.resend_now(&mut self.hal).unwrap() {
                            let p = p.to_vec();
                            self.link.send(&p).unwrap();
                        }
                    }
                    ClientEvent::Nothing => {}
                }
            }
            if let Some(p) = self.client.poll(&mut self.hal).unwrap() {
                let p = p.to_vec();
                self.link.send(&p).unwrap();
            }
        }
        panic!("no reply from the device");
    }

    /// The body of each reply frame of an OK reply.
    fn frames(&mut self, prog: &[u8]) -> Vec<Vec<u8>> {
        let r = self.command(prog);
        match zepto_kernel::saccp::client::decode_reply(&r).unwrap() {
            Reply::Ok { data, truncated } => {
                assert!(!truncated);
                reply::frames(data)
                    .map(|f| {
                        let f = f.unwrap();
                        assert!(f.exception.is_none() && !f.truncated);
                        f.body.to_vec()
                    })
                    .collect()
            }
            other => panic!("not OK: {other:?}"),
        }
    }
}

fn boot(elf: &str) -> (Qemu, Session, String) {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let qemu = Qemu(
        Command::new("qemu-system-arm")
            .args(["-M", "microbit", "-display", "none", "-monitor", "none"])
            .arg("-serial")
            .arg(format!("tcp:127.0.0.1:{port},server=on,wait=on"))
            .args(["-kernel", elf])
            // Extra arguments, e.g. an instruction trace (baremetal-app/perf-trace.sh).
            .args(
                std::env::var("ZEPTO_QEMU_ARGS")
                    .unwrap_or_default()
                    .split_whitespace(),
            )
            .stdin(Stdio::null())
            .spawn()
            .expect("qemu-system-arm"),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    let stream = loop {
        match TcpStream::connect(("127.0.0.1", port)) {
            Ok(s) => break s,
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => panic!("QEMU's serial port: {e}"),
        }
    };
    stream.set_nodelay(true).unwrap();
    // The boot banner, read raw before the SADLP link takes the stream.
    let mut banner = Vec::new();
    let mut r = stream.try_clone().unwrap();
    while !banner.ends_with(b"\r\n") {
        let mut b = [0u8; 1];
        r.read_exact(&mut b).unwrap();
        banner.push(b[0]);
        assert!(banner.len() < 200, "no boot banner");
    }
    let link = StreamLink::new(r, stream, "qemu".into());
    // QEMU never writes the flash image back: the device boots with blank nonce
    // records and starts them high at random; the client starts low and resyncs.
    let mut hal = TestHal::<256>::new(77);
    let cfg = ClientConfig {
        nonce_reserve: 256,
        blank: BlankStart::Floor(0),
        ..ClientConfig::default()
    };
    let client = Client::new(&KEY, &mut hal, cfg).unwrap();
    let session = Session {
        link,
        client,
        hal,
        start: Instant::now(),
    };
    (qemu, session, String::from_utf8(banner).unwrap())
}

#[test]
#[ignore = "needs QEMU and a firmware build: run baremetal-app/qemu-test.sh"]
fn microbit_firmware_in_qemu() {
    let elf = std::env::var("ZEPTO_MICROBIT_ELF")
        .expect("set ZEPTO_MICROBIT_ELF (see baremetal-app/qemu-test.sh)");
    let (_qemu, mut s, banner) = boot(&elf);
    // "zepto micro:bit <vm> <cipher>": any full-stack configuration.
    let words: Vec<&str> = banner.trim_end().split(' ').collect();
    assert_eq!(words[..2], ["zepto", "micro:bit"], "banner {banner:?}");
    let level = match words[2] {
        "vm-one" => Level::One,
        "vm-small" => Level::Small,
        "vm-medium" => Level::Medium,
        other => panic!("not a full-stack build: {other}"),
    };
    let cipher = if cfg!(feature = "speck-firmware") {
        "speck"
    } else {
        "aes"
    };
    assert_eq!(words[3], cipher, "firmware and client must use one cipher");

    // Ping.
    let ping = program(&[Instruction::Exec {
        bodypart: 0,
        data: &[],
    }]);
    assert_eq!(s.frames(&ping), [vec![0x01]]);

    // Echo of 8 bytes (the SACCP payload every device must accept), with a zero
    // byte to exercise COBS.
    let echo = program(&[Instruction::Exec {
        bodypart: 1,
        data: &[1, 0, 2, 3, 4, 5, 6, 7],
    }]);
    assert_eq!(s.frames(&echo), [vec![1, 0, 2, 3, 4, 5, 6, 7]]);

    // DEVICECAPS: SACCP_GUARANTEED_PAYLOAD 8 (DEVICE-CAPS-UINT2: 8 << 1 in one
    // Encoded-Unsigned-Int byte) and ZEPTOVM_LEVEL (VM-One 0, VM-Small 2,
    // VM-Medium 3).
    let devcaps = program(&[Instruction::DeviceCaps {
        fields: &[caps::SACCP_GUARANTEED_PAYLOAD, caps::LEVEL],
    }]);
    assert_eq!(s.frames(&devcaps), [vec![16, level as u8]]);

    // LED matrix row 1 (P0.13): drive high, read back, drive low, read back.
    let led = |cmd: u8| {
        program(&[Instruction::Exec {
            bodypart: 2,
            data: std::slice::from_ref(&cmd),
        }])
    };
    assert_eq!(s.frames(&led(1)), [vec![1]]);
    assert_eq!(s.frames(&led(2)), [vec![1]]);
    assert_eq!(s.frames(&led(0)), [vec![0]]);
    assert_eq!(s.frames(&led(2)), [vec![0]]);

    // The simulated sensor: each measurement waits 10 ms on the device's timer;
    // values 100, 101 (TWO_BYTE_FIELD, little-endian).
    let sensor = program(&[
        Instruction::Exec {
            bodypart: 3,
            data: &[],
        },
        Instruction::Exec {
            bodypart: 3,
            data: &[],
        },
    ]);
    assert_eq!(s.frames(&sensor), [vec![100, 0], vec![101, 0]]);

    // A VM exception: EXEC of a body part the device does not have.
    let bad = program(&[
        Instruction::Exec {
            bodypart: 0,
            data: &[],
        },
        Instruction::Exec {
            bodypart: 42,
            data: &[],
        },
    ]);
    let r = s.command(&bad);
    match zepto_kernel::saccp::client::decode_reply(&r).unwrap() {
        Reply::Exception { data, .. } => {
            let e = reply::decode_exception(data).unwrap();
            assert_eq!(
                ExceptionCode::from_code(e.code),
                Some(ExceptionCode::UnknownBodypart)
            );
            // The second instruction, after the 3-byte EXEC of body part 0.
            assert_eq!(e.position, ping.len() as u16);
        }
        other => panic!("not an exception: {other:?}"),
    }

    // The device keeps working after the exception.
    assert_eq!(s.frames(&ping), [vec![0x01]]);

    // REPEAT_OLD_PROGRAM: the device runs its kept copy of Ping again once the
    // checksum (CMAC-AES128 under the fixed SACCP key) matches; a checksum of
    // another program is refused and runs nothing.
    let repeat = |old: &[u8]| {
        let old = old.to_vec();
        move |heap: &mut Heap<'_>, h: Handle| {
            saccp_client::build_repeat_old_program(heap, h, &ExtraHeaders::default(), &old, 16)
        }
    };
    let r = s.command_with(repeat(&ping));
    match saccp_client::decode_reply(&r).unwrap() {
        Reply::Ok { data, .. } => {
            let bodies: Vec<Vec<u8>> = reply::frames(data)
                .map(|f| f.unwrap().body.to_vec())
                .collect();
            assert_eq!(bodies, [vec![0x01]]);
        }
        other => panic!("not OK: {other:?}"),
    }
    let r = s.command_with(repeat(&echo));
    assert_eq!(
        saccp_client::decode_reply(&r).unwrap(),
        Reply::Error(ErrorCode::OLD_PROGRAM_CHECKSUM_DOESNT_MATCH)
    );

    // Measured RAM: peak stack since reset, .data + .bss, heap arena.
    let diag = program(&[Instruction::Exec {
        bodypart: 7,
        data: &[],
    }]);
    let d = s.frames(&diag);
    assert_eq!(d.len(), 1);
    let f = &d[0];
    assert_eq!(f.len(), 8);
    let word = |i: usize| u16::from_le_bytes([f[2 * i], f[2 * i + 1]]);
    let (stack, statics, heap, state) = (word(0), word(1), word(2), word(3));
    println!(
        "device RAM: peak stack {stack} B (device object {state} B), data+bss {statics} B, heap arena {heap} B"
    );
    println!("ZEPTO_RAM stack={stack} static={statics} heap={heap} device={state}");
    // The stack was used (the pump is deeper than a few frames) and stayed inside
    // the 16 KiB of RAM.
    assert!(stack > 256 && usize::from(stack) + usize::from(statics) < 16 * 1024);
}

/// One 64-byte command round trip, as measured by `baremetal-app/perf-trace.sh`: a
/// 64-byte program (EXEC of Echo with 61 data bytes) and its 61-byte echo. Needs a
/// firmware built with the `big` feature (room for 64-byte programs):
/// `qemu-test.sh vm-small-big`.
#[test]
#[ignore = "needs QEMU and a firmware build: run baremetal-app/qemu-test.sh"]
fn microbit_echo_64_bytes() {
    let elf = std::env::var("ZEPTO_MICROBIT_ELF")
        .expect("set ZEPTO_MICROBIT_ELF (see baremetal-app/qemu-test.sh)");
    let (_qemu, mut s, banner) = boot(&elf);
    assert!(
        banner.trim_end().ends_with(" big"),
        "this test needs firmware built with the `big` feature ({banner:?})"
    );
    let data: Vec<u8> = (0..61u8).map(|i| i.wrapping_mul(37)).collect();
    let prog = program(&[Instruction::Exec {
        bodypart: 1,
        data: &data,
    }]);
    assert_eq!(prog.len(), 64);
    // Warm-up, then the measured commands (the trace script takes the last).
    for _ in 0..3 {
        assert_eq!(s.frames(&prog), std::slice::from_ref(&data));
    }
}
