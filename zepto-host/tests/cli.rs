//! `zepto device` and `zepto send` as a user runs them: separate processes talking over
//! UDP, a pty pair and TCP, with restarts, wrong keys and line noise.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

mod common;
use common::{json_reply, send, DeviceProc, KEY, ZEPTO};

/// EXEC 1 (ping), EXEC 2 "hi" (echo): one frame each.
const PING_ECHO: &str = "020200 0204026869";

fn check_ping_echo(v: &serde_json::Value) {
    assert_eq!(v["status"], "ok");
    // Frames: FLAGS-AND-SIZE = size<<2 | 1 -> 05 "01", 09 "6869".
    assert_eq!(v["reply"], "050109".to_string() + "6869");
    assert_eq!(v["frames"][0]["body"], "01");
    assert_eq!(v["frames"][1]["body"], "6869");
}

#[test]
fn udp_round_trips_and_restart_keeps_nonces() {
    let dir = tempfile::tempdir().unwrap();
    let dev = DeviceProc::start(dir.path(), &["--udp", "127.0.0.1:0"], &[]);
    assert_eq!(dev.kind, "udp");
    let link = dev.link_args();
    for _ in 0..3 {
        check_ping_echo(&json_reply(&send(
            dir.path(),
            KEY,
            &link,
            &["--json", "--hex", PING_ECHO],
        )));
    }
    let states: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "state"))
        .collect();
    assert_eq!(states.len(), 2, "one device and one client state file");
    drop(dev);
    let before = device_nfs_mark(dir.path());
    // The device restarts from its state file, on the same port.
    let dev = DeviceProc::start(dir.path(), &["--udp", &link[1]], &[]);
    check_ping_echo(&json_reply(&send(
        dir.path(),
        KEY,
        &dev.link_args(),
        &["--json", "--hex", PING_ECHO],
    )));
    drop(dev);
    // The restarted device went on from its persisted mark: its nonces only grow.
    let after = device_nfs_mark(dir.path());
    assert!(after > before, "NFS mark {before} -> {after}");
}

/// The device's persisted NFS (what a restart starts from).
fn device_nfs_mark(dir: &Path) -> u64 {
    let path = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.extension().is_some_and(|e| e == "state")
                && p.file_name()
                    .unwrap()
                    .to_string_lossy()
                    .starts_with("device-")
        })
        .expect("device state file");
    let mut storage = zepto_host::storage::FileStorage::open(&path).unwrap();
    let kid = zepto_kernel::nonce_store::key_id::<zepto_kernel::sasp::DefaultCipher>(
        &zepto_host::cli::parse_key(KEY).unwrap(),
    )
    .unwrap();
    zepto_kernel::nonce_store::stored_marks(&mut storage, 0, kid)
        .unwrap()
        .expect("records for the key")
        .0
}

#[test]
fn wrong_key_is_rejected_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let dev = DeviceProc::start(dir.path(), &["--udp", "127.0.0.1:0"], &[]);
    let out = send(
        dir.path(),
        "ffeeddccbbaa99887766554433221100",
        &dev.link_args(),
        &["--hex", "020200", "--timeout", "800"],
    );
    assert_eq!(out.status.code(), Some(3));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no reply") && err.contains("key"), "{err}");
    // A device under another cipher looks the same: the message names this one.
    assert!(
        err.contains(zepto_kernel::sasp::DEFAULT_CIPHER_NAME),
        "{err}"
    );
    // The device is unharmed: the right key still works.
    check_ping_echo(&json_reply(&send(
        dir.path(),
        KEY,
        &dev.link_args(),
        &["--json", "--hex", PING_ECHO],
    )));
}

#[test]
fn bad_input_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    let link = vec!["--udp".to_string(), "127.0.0.1:9".to_string()];
    let out = send(dir.path(), "0011", &link, &["--hex", "00"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("expected 16 bytes"));
    let out = send(dir.path(), KEY, &link, &["--hex", "0g"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("bad hex"));
    // Nobody listens: no answer (3).
    let out = send(
        dir.path(),
        KEY,
        &link,
        &["--hex", "020200", "--timeout", "300"],
    );
    assert_eq!(out.status.code(), Some(3));
}

#[test]
fn vm_exception_exit_code_and_output() {
    let dir = tempfile::tempdir().unwrap();
    let dev = DeviceProc::start(dir.path(), &["--udp", "127.0.0.1:0"], &[]);
    // EXEC on body part 9, which this device does not have.
    let out = send(dir.path(), KEY, &dev.link_args(), &["--hex", "021200"]);
    assert_eq!(out.status.code(), Some(4));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("VM EXCEPTION UNKNOWNBODYPART (16) at instruction offset 0"),
        "{text}"
    );
}

#[test]
fn pty_with_line_noise() {
    let dir = tempfile::tempdir().unwrap();
    let dev = DeviceProc::start(dir.path(), &["--pty"], &["--level", "small"]);
    assert_eq!(dev.kind, "pty");
    let link = dev.link_args();
    check_ping_echo(&json_reply(&send(
        dir.path(),
        KEY,
        &link,
        &["--json", "--hex", PING_ECHO],
    )));
    // Garbage, a half frame and log text on the line: framing recovers.
    {
        let mut tty = std::fs::OpenOptions::new()
            .write(true)
            .open(&link[1])
            .unwrap();
        tty.write_all(b"\x55\xaa\x13 boot: hello\r\n\x00\x07\x01\x02")
            .unwrap();
        tty.write_all(&[0x00; 3]).unwrap();
        tty.flush().unwrap();
    }
    std::thread::sleep(Duration::from_millis(100));
    check_ping_echo(&json_reply(&send(
        dir.path(),
        KEY,
        &link,
        &["--json", "--hex", PING_ECHO],
    )));
}

#[test]
fn tcp_serves_one_connection_after_another() {
    let dir = tempfile::tempdir().unwrap();
    let dev = DeviceProc::start(dir.path(), &["--tcp", "127.0.0.1:0"], &[]);
    assert_eq!(dev.kind, "tcp");
    for _ in 0..2 {
        check_ping_echo(&json_reply(&send(
            dir.path(),
            KEY,
            &dev.link_args(),
            &["--json", "--hex", PING_ECHO],
        )));
    }
}

/// Ctrl-C stops the device cleanly and saves its exact nonces: two runs of one
/// command each move the persisted NFS by exactly one (not by the reserve).
#[test]
fn ctrl_c_saves_exact_nonces() {
    let dir = tempfile::tempdir().unwrap();
    let mut marks = Vec::new();
    for _ in 0..2 {
        let mut dev = DeviceProc::start(dir.path(), &["--udp", "127.0.0.1:0"], &[]);
        check_ping_echo(&json_reply(&send(
            dir.path(),
            KEY,
            &dev.link_args(),
            &["--json", "--hex", PING_ECHO],
        )));
        let pid = nix::unistd::Pid::from_raw(i32::try_from(dev.child.id()).unwrap());
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).unwrap();
        let status = dev.child.wait().unwrap();
        assert!(status.success(), "device exit: {status}");
        marks.push(device_nfs_mark(dir.path()));
    }
    assert_eq!(marks[1], marks[0] + 1, "persisted NFS: {marks:?}");
}

/// A free loopback port (bound and released).
fn free_port(udp: bool) -> u16 {
    if udp {
        std::net::UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    } else {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }
}

#[test]
fn send_waits_for_a_device_that_starts_late() {
    for kind in ["--udp", "--tcp"] {
        let dir = tempfile::tempdir().unwrap();
        let addr = format!("127.0.0.1:{}", free_port(kind == "--udp"));
        let link = vec![kind.to_string(), addr.clone()];
        let d = dir.path().to_path_buf();
        // Refused at first (nobody listens): the client keeps trying.
        let client = std::thread::spawn(move || {
            send(
                &d,
                KEY,
                &link,
                &["--json", "--hex", PING_ECHO, "--timeout", "8000"],
            )
        });
        std::thread::sleep(Duration::from_millis(700));
        let _dev = DeviceProc::start(dir.path(), &[kind, &addr], &[]);
        check_ping_echo(&json_reply(&client.join().unwrap()));
    }
}

#[test]
fn key_from_a_file_or_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let dev = DeviceProc::start(dir.path(), &["--udp", "127.0.0.1:0"], &[]);
    let key_file = dir.path().join("key");
    std::fs::write(&key_file, format!("{KEY}\n")).unwrap();
    let mut perms = std::fs::metadata(&key_file).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o600);
    std::fs::set_permissions(&key_file, perms).unwrap();
    let run = |args: &[&str], env: Option<&str>| {
        let mut c = std::process::Command::new(common::ZEPTO);
        c.arg("send")
            .args(dev.link_args())
            .args(args)
            .args(["--json", "--hex", PING_ECHO])
            .env("ZEPTO_STATE_DIR", dir.path())
            .env_remove("ZEPTO_KEY");
        if let Some(k) = env {
            c.env("ZEPTO_KEY", k);
        }
        c.output().unwrap()
    };
    let out = run(&["--key-file", key_file.to_str().unwrap()], None);
    check_ping_echo(&json_reply(&out));
    assert!(
        out.stderr.is_empty(),
        "no warning for a private key file, no notice for a first use: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    check_ping_echo(&json_reply(&run(&[], Some(KEY))));
    // No key at all: bad input, with the ways to give one.
    let out = run(&[], None);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--key-file"));
}

#[test]
fn a_bad_state_file_is_refused_with_a_way_out() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("dev.state");
    let start = |key: &str| {
        std::process::Command::new(common::ZEPTO)
            .args(["device", "--key", key, "--udp", "127.0.0.1:0", "--state"])
            .arg(&state)
            .output()
            .unwrap()
    };
    let shown = state.display().to_string();
    for (bytes, what) in [
        (
            vec![0u8; 3],
            "not a Zepto state file (3 bytes, expected 1024)",
        ),
        (vec![0x5a; 1024], "is damaged (no valid nonce record)"),
    ] {
        std::fs::write(&state, &bytes).unwrap();
        let out = start(KEY);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(err.contains(what), "{err}");
        assert!(err.contains(&format!("mv {shown} {shown}.bad")), "{err}");
        assert_eq!(
            err.matches(&shown).count(),
            3,
            "path once, then in the advice: {err}"
        );
        assert_eq!(
            std::fs::read(&state).unwrap(),
            bytes,
            "the file is left alone"
        );
    }
    // A state file of another key: refused, not overwritten.
    std::fs::remove_file(&state).unwrap();
    let mut dev = std::process::Command::new(common::ZEPTO)
        .args(["device", "--key", KEY, "--udp", "127.0.0.1:0", "--state"])
        .arg(&state)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Its first reply makes the device write its records.
    let mut line = String::new();
    let mut err = std::io::BufReader::new(dev.stderr.take().unwrap());
    std::io::BufRead::read_line(&mut err, &mut line).unwrap();
    let addr = line.split("serving on udp ").nth(1).unwrap();
    let addr = addr.split(',').next().unwrap().to_string();
    check_ping_echo(&json_reply(&send(
        dir.path(),
        KEY,
        &["--udp".to_string(), addr],
        &["--json", "--hex", PING_ECHO],
    )));
    dev.kill().unwrap();
    dev.wait().unwrap();
    let before = std::fs::read(&state).unwrap();
    let out = start("ffeeddccbbaa99887766554433221100");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("holds the nonces of another key"), "{err}");
    assert_eq!(std::fs::read(&state).unwrap(), before);
}

/// Runs `zepto ARGS` with its standard output a pipe whose reader is already gone
/// (as in `zepto demo | head -1` once `head` has exited).
fn with_closed_stdout(args: &[&str], state_dir: &Path) -> Output {
    let (read, write) = nix::unistd::pipe().expect("pipe");
    drop(read);
    Command::new(ZEPTO)
        .args(args)
        .env("ZEPTO_STATE_DIR", state_dir)
        .stdin(Stdio::null())
        .stdout(Stdio::from(write))
        .stderr(Stdio::piped())
        .output()
        .expect("run zepto")
}

/// A closed standard output ends every command quietly with exit code 0, as a
/// reader leaving a pipe (`| head -1`) is no failure of the command: no panic, no
/// message. A device whose log (stderr) nobody reads goes on serving.
#[test]
fn closed_stdout_pipe_ends_quietly() {
    let dir = tempfile::tempdir().unwrap();
    let dev = DeviceProc::start_unread(dir.path(), &["--udp", "127.0.0.1:0"], &["-vv"]);
    let link = dev.link_args();
    let mut send = vec!["send", "--key", KEY, &link[0], &link[1]];
    send.extend(["--hex", PING_ECHO]);
    let mut send_json = send.clone();
    send_json.push("--json");
    let cases: Vec<Vec<&str>> = vec![
        vec!["demo"],
        send,
        send_json,
        vec!["disasm", "020200100040020600250200000f"],
        vec!["vm", "--hex", "020200"],
        vec!["--help"],
        vec!["--version"],
    ];
    for args in &cases {
        let out = with_closed_stdout(args, dir.path());
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{args:?}: {}\n{err}",
            out.status
        );
        assert!(err.is_empty(), "{args:?}: {err}");
    }
    // The device logged every packet and HAL event (-vv) to its closed stderr, and
    // still answers.
    check_ping_echo(&json_reply(&self::send(
        dir.path(),
        KEY,
        &link,
        &["--json", "--hex", PING_ECHO],
    )));
}

/// `size` bytes of program: EXEC 1 (ping), a JMP over filler bytes, the end.
fn program_of(size: usize) -> String {
    // EXEC 1 "" is 3 bytes, the JMP 2 to 4 (a 1- to 3-byte delta).
    for jmp in [2, 3, 4] {
        let filler = "ab".repeat(size - 3 - jmp);
        let src = format!("EXEC 1 \"\"\nJMP end\n.bytes \"{filler}\"\nend:\n");
        let code = zepto_host::asm::assemble(&src).unwrap();
        if code.len() == size {
            return code.iter().map(|b| format!("{b:02x}")).collect();
        }
    }
    panic!("no program of {size} bytes");
}

/// The largest program that fits the host link's 512-byte packets runs on the
/// device; one byte more is refused before anything is sent, with the limit.
#[test]
fn program_size_limit_is_stated_and_real() {
    let dir = tempfile::tempdir().unwrap();
    let dev = DeviceProc::start(dir.path(), &["--udp", "127.0.0.1:0"], &[]);
    let link = dev.link_args();
    let v = json_reply(&send(
        dir.path(),
        KEY,
        &link,
        &["--json", "--hex", &program_of(472)],
    ));
    assert_eq!(v["reply"], "0501");
    for (size, shown) in [(473, "473"), (10_003, "10,003")] {
        let out = send(dir.path(), KEY, &link, &["--hex", &program_of(size)]);
        assert_eq!(out.status.code(), Some(2));
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            err.trim(),
            format!(
                "zepto: program of {shown} bytes; this device accepts at most 472 \
                 (one 512-byte packet; --mtu to change)"
            )
        );
    }
    // A device with smaller packets (the micro:bit firmware's 70 bytes).
    let out = send(
        dir.path(),
        KEY,
        &link,
        &["--mtu", "70", "--hex", &program_of(41)],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("at most 40 (one 70-byte packet"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
