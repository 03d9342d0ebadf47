//! Nonce safety and reply correctness where users break them: several `zepto send`
//! processes at once on one state folder, a deleted or truncated state file (also
//! while clients run), a device that lost its state, and a hostile sender on the
//! device's port. A relay
//! records every datagram between the clients and the device; no SASP nonce may
//! ever carry two different packets in either direction.

mod common;

use std::net::UdpSocket;
use std::path::Path;
use std::time::{Duration, Instant};

use common::relay::{assert_no_nonce_reuse, nonce_span, Dir, Relay};
use common::{json_reply, send, state_files, DeviceProc, KEY};

/// EXEC 2 (echo) with `payload`: the reply's first frame is the payload.
fn echo(payload: &[u8]) -> String {
    assert!(payload.len() < 128);
    format!("0204{:02x}{}", payload.len(), hex(payload))
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Sends `program` (hex) through `link` and returns the first frame's body (hex).
fn first_frame(state: &Path, link: &[String], program: &str) -> String {
    let v = json_reply(&send(state, KEY, link, &["--json", "--hex", program]));
    v["frames"][0]["body"].as_str().unwrap().to_string()
}

#[test]
fn four_clients_share_one_state_folder_without_reusing_a_nonce() {
    let dev_dir = tempfile::tempdir().unwrap();
    let cli_dir = tempfile::tempdir().unwrap();
    let dev = DeviceProc::start(dev_dir.path(), &["--udp", "127.0.0.1:0"], &[]);
    let relay = Relay::start(&dev.addr);
    let link = relay.link_args();
    let threads: Vec<_> = (0..4)
        .map(|c| {
            let (link, dir) = (link.clone(), cli_dir.path().to_path_buf());
            std::thread::spawn(move || {
                for i in 0..25 {
                    let payload = format!("c{c}n{i:02}");
                    let body = first_frame(&dir, &link, &echo(payload.as_bytes()));
                    assert_eq!(body, hex(payload.as_bytes()), "client {c} command {i}");
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("a client failed");
    }
    assert_eq!(state_files(cli_dir.path(), "client").len(), 1);
    let log = relay.datagrams();
    let counts = assert_no_nonce_reuse(&log);
    let (up, down) = (counts[&Dir::ToDevice], counts[&Dir::ToClient]);
    let (lo, hi, jumps) = nonce_span(&log, Dir::ToClient, 1 << 24).unwrap();
    println!(
        "4 clients x 25 commands: {} packets to the device ({} nonces), {} to the clients \
         ({} nonces, from {lo} to {hi}), reused nonces: 0",
        up.0, up.1, down.0, down.1
    );
    assert!(up.0 >= 100 && down.0 >= 100);
    // The device started blank: a resynchronisation moves it at least 2^24 past a
    // client's value once, never once per client (that burnt 2^24 nonces per
    // command).
    assert!(
        jumps <= 1,
        "the device's nonces jumped by 2^24 or more {jumps} times"
    );
}

#[test]
fn a_deleted_client_state_gets_the_second_command_its_own_reply() {
    let dev_dir = tempfile::tempdir().unwrap();
    let cli_dir = tempfile::tempdir().unwrap();
    let dev = DeviceProc::start(dev_dir.path(), &["--udp", "127.0.0.1:0"], &[]);
    let relay = Relay::start(&dev.addr);
    let link = relay.link_args();
    // PUSHREPLY "aa", then (state deleted) PUSHREPLY "bb".
    assert_eq!(first_frame(cli_dir.path(), &link, "0301aa"), "aa");
    for f in state_files(cli_dir.path(), "client") {
        std::fs::remove_file(f).unwrap();
    }
    assert_eq!(first_frame(cli_dir.path(), &link, "0301bb"), "bb");
    assert_no_nonce_reuse(&relay.datagrams());
}

#[test]
fn a_truncated_client_state_file_starts_again_from_the_clock() {
    let dev_dir = tempfile::tempdir().unwrap();
    let cli_dir = tempfile::tempdir().unwrap();
    let dev = DeviceProc::start(dev_dir.path(), &["--udp", "127.0.0.1:0"], &[]);
    let relay = Relay::start(&dev.addr);
    let link = relay.link_args();
    assert_eq!(first_frame(cli_dir.path(), &link, "0301aa"), "aa");
    let state = &state_files(cli_dir.path(), "client")[0];
    std::fs::write(state, []).unwrap();
    let out = send(cli_dir.path(), KEY, &link, &["--json", "--hex", "0301bb"]);
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(err.contains("was empty"), "{err}");
    assert_eq!(json_reply(&out)["frames"][0]["body"], "bb");
    assert_no_nonce_reuse(&relay.datagrams());
}

#[test]
fn a_device_that_lost_its_state_never_reuses_its_nonces() {
    let dev_dir = tempfile::tempdir().unwrap();
    let cli_dir = tempfile::tempdir().unwrap();
    let dev = DeviceProc::start(dev_dir.path(), &["--udp", "127.0.0.1:0"], &[]);
    let relay = Relay::start(&dev.addr);
    let link = relay.link_args();
    for b in ["11", "22", "33"] {
        assert_eq!(first_frame(cli_dir.path(), &link, &format!("0301{b}")), b);
    }
    let port = dev.addr.clone();
    drop(dev);
    for f in state_files(dev_dir.path(), "device") {
        std::fs::remove_file(f).unwrap();
    }
    // The same device, restarted on the same port with no state.
    let dev = DeviceProc::start(dev_dir.path(), &["--udp", &port], &[]);
    for b in ["44", "55"] {
        assert_eq!(first_frame(cli_dir.path(), &link, &format!("0301{b}")), b);
    }
    assert!(
        dev.log.lock().unwrap().contains("is new"),
        "the device says it started new records"
    );
    let counts = assert_no_nonce_reuse(&relay.datagrams());
    assert!(counts[&Dir::ToClient].0 >= 5);
}

#[test]
fn garbage_from_another_sender_cannot_take_the_reply() {
    let dev_dir = tempfile::tempdir().unwrap();
    let cli_dir = tempfile::tempdir().unwrap();
    let dev = DeviceProc::start(dev_dir.path(), &["--udp", "127.0.0.1:0"], &[]);
    let relay = Relay::start(&dev.addr);
    let link = relay.link_args();
    assert_eq!(first_frame(cli_dir.path(), &link, "0301aa"), "aa");
    let captured = relay.datagrams()[0].bytes.clone();
    // An attacker on its own socket: garbage, and a replay of a captured command.
    let attacker = UdpSocket::bind("127.0.0.1:0").unwrap();
    attacker
        .set_read_timeout(Some(Duration::from_millis(10)))
        .unwrap();
    let target = dev.addr.clone();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = std::sync::Arc::clone(&stop);
    let noise = std::thread::spawn(move || {
        let mut got = Vec::new();
        let mut buf = [0u8; 1024];
        let mut i = 0u8;
        while !flag.load(std::sync::atomic::Ordering::Relaxed) {
            attacker.send_to(&[i; 48], &target).unwrap();
            i = i.wrapping_add(1);
            if let Ok(n) = attacker.recv(&mut buf) {
                got.push(buf[..n].to_vec());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // Last, a replay: it gets an "old nonce" answer, nothing else.
        attacker.send_to(&captured, &target).unwrap();
        attacker
            .set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        let replay_answer = attacker.recv(&mut buf).map(|n| buf[..n].to_vec()).ok();
        (got, replay_answer)
    });
    // SLEEP 1000, then PUSHREPLY "cc": garbage arrives all through the sleep.
    let started = Instant::now();
    let body = first_frame(cli_dir.path(), &link, "04e8060301cc");
    let took = started.elapsed();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (got, replay_answer) = noise.join().unwrap();
    assert_eq!(body, "cc");
    assert!(
        got.is_empty(),
        "the attacker received {} packets",
        got.len()
    );
    let answer = replay_answer.expect("the replay gets an answer");
    assert!(
        answer[5] & 0x80 != 0,
        "the replay's answer is an SASP \"old nonce\" message, not a reply"
    );
    // The reply came when the program ended, not on a later resend.
    assert!(took < Duration::from_millis(1800), "reply after {took:?}");
    assert_no_nonce_reuse(&relay.datagrams());
}

#[test]
fn client_state_deleted_while_clients_run() {
    let dev_dir = tempfile::tempdir().unwrap();
    let cli_dir = tempfile::tempdir().unwrap();
    let dev = DeviceProc::start(dev_dir.path(), &["--udp", "127.0.0.1:0"], &[]);
    let relay = Relay::start(&dev.addr);
    let link = relay.link_args();
    // Three clients, each sending fifteen commands one after the other.
    let threads: Vec<_> = (0..3)
        .map(|c| {
            let (link, dir) = (link.clone(), cli_dir.path().to_path_buf());
            std::thread::spawn(move || {
                for i in 0..15 {
                    let payload = format!("c{c}n{i:02}");
                    let body = first_frame(&dir, &link, &echo(payload.as_bytes()));
                    assert_eq!(body, hex(payload.as_bytes()), "client {c} command {i}");
                }
            })
        })
        .collect();
    // Meanwhile, once the clients have written their state, the state file and its
    // lock file are deleted, once.
    let started = Instant::now();
    let files = loop {
        std::thread::sleep(Duration::from_millis(200));
        let files: Vec<_> = std::fs::read_dir(cli_dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| !p.file_name().unwrap().to_string_lossy().contains(".tmp"))
            .collect();
        if files.len() == 2 || started.elapsed() > Duration::from_secs(10) {
            break files;
        }
    };
    assert_eq!(files.len(), 2, "state and lock file: {files:?}");
    for f in files {
        std::fs::remove_file(f).unwrap();
    }
    for t in threads {
        t.join().expect("a client failed");
    }
    let counts = assert_no_nonce_reuse(&relay.datagrams());
    assert!(counts[&Dir::ToDevice].0 >= 45);
}

/// Measures what a replay flood costs the device: one recorded command sent again
/// from another socket as fast as possible for two seconds (`cargo test -p
/// zepto-host --test nonce_safety -- --ignored --nocapture`; figures in
/// `docs/security.md`). Ignored in the suite: it loads the machine.
#[test]
#[ignore]
fn replay_flood_costs_the_device_few_nonces() {
    let dev_dir = tempfile::tempdir().unwrap();
    let cli_dir = tempfile::tempdir().unwrap();
    let dev = DeviceProc::start(dev_dir.path(), &["--udp", "127.0.0.1:0"], &[]);
    let relay = Relay::start(&dev.addr);
    assert_eq!(
        first_frame(cli_dir.path(), &relay.link_args(), "0301aa"),
        "aa"
    );
    let recorded = relay
        .datagrams()
        .into_iter()
        .find(|d| d.dir == Dir::ToDevice && d.bytes[5] & 0x80 == 0)
        .unwrap()
        .bytes;
    let attacker = UdpSocket::bind("127.0.0.1:0").unwrap();
    attacker.set_nonblocking(true).unwrap();
    let (mut sent, mut answers) = (0u64, Vec::new());
    let mut buf = [0u8; 1024];
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(2) {
        if attacker.send_to(&recorded, &dev.addr).is_ok() {
            sent += 1;
        }
        while let Ok(n) = attacker.recv(&mut buf) {
            answers.push(common::relay::nonce(&buf[..n]).unwrap());
        }
    }
    std::thread::sleep(Duration::from_millis(200));
    while let Ok(n) = attacker.recv(&mut buf) {
        answers.push(common::relay::nonce(&buf[..n]).unwrap());
    }
    let took = started.elapsed();
    println!(
        "{sent} replays in {took:?}: {} answers, device nonces {:?}",
        answers.len(),
        answers.first().zip(answers.last())
    );
    let most = 2 + took.as_millis() as usize / 250;
    assert!(answers.len() <= most, "{} answers", answers.len());
}
