//! Helpers shared by the integration tests that run `zepto` as separate processes.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, ChildStderr, Command, Output, Stdio};
use std::sync::{Arc, Mutex};

pub mod relay;

/// The `zepto` binary under test.
pub const ZEPTO: &str = env!("CARGO_BIN_EXE_zepto");

/// The key the tests share.
pub const KEY: &str = "00112233445566778899aabbccddeeff";

/// A running `zepto device`; killed on drop.
pub struct DeviceProc {
    /// The process.
    pub child: Child,
    /// Link kind and address as the device printed them ("udp", "127.0.0.1:4000").
    pub kind: String,
    /// The address it serves on.
    pub addr: String,
    /// Everything it printed on stderr after its banner.
    pub log: Arc<Mutex<String>>,
}

impl DeviceProc {
    /// Starts `zepto device` with its state in `state_dir`.
    pub fn start(state_dir: &Path, link: &[&str], extra: &[&str]) -> Self {
        let (child, kind, addr, mut err) = spawn_device(state_dir, link, extra);
        // Keep draining stderr so the device never blocks on a full pipe.
        let log = Arc::new(Mutex::new(String::new()));
        let sink = Arc::clone(&log);
        std::thread::spawn(move || {
            let mut l = String::new();
            while err.read_line(&mut l).map(|n| n > 0).unwrap_or(false) {
                sink.lock().unwrap().push_str(&l);
                l.clear();
            }
        });
        DeviceProc {
            child,
            kind,
            addr,
            log,
        }
    }

    /// Like [`DeviceProc::start`], but nobody reads the device's log: its stderr is
    /// closed after the banner, so every later write fails with a broken pipe.
    pub fn start_unread(state_dir: &Path, link: &[&str], extra: &[&str]) -> Self {
        let (child, kind, addr, err) = spawn_device(state_dir, link, extra);
        drop(err);
        DeviceProc {
            child,
            kind,
            addr,
            log: Arc::new(Mutex::new(String::new())),
        }
    }

    /// The `zepto send` arguments that reach this device.
    pub fn link_args(&self) -> Vec<String> {
        let flag = match self.kind.as_str() {
            "udp" => "--udp",
            "tcp" => "--tcp",
            "pty" => "--serial",
            k => panic!("unknown link kind {k}"),
        };
        vec![flag.to_string(), self.addr.clone()]
    }
}

/// Spawns `zepto device` and reads its banner: the process, its link kind and
/// address, and its stderr after the banner.
fn spawn_device(
    state_dir: &Path,
    link: &[&str],
    extra: &[&str],
) -> (Child, String, String, BufReader<ChildStderr>) {
    let mut child = Command::new(ZEPTO)
        .arg("device")
        .args(["--key", KEY])
        .args(link)
        .args(extra)
        .env("ZEPTO_STATE_DIR", state_dir)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start zepto device");
    let mut line = String::new();
    let mut err = BufReader::new(child.stderr.take().expect("stderr"));
    err.read_line(&mut line).expect("device banner");
    // "zepto device: serving on udp 127.0.0.1:4000, VM level ..."
    let rest = line
        .split("serving on ")
        .nth(1)
        .unwrap_or_else(|| panic!("unexpected banner: {line}"));
    let mut words = rest.split_whitespace();
    let kind = words.next().unwrap().to_string();
    let addr = words.next().unwrap().trim_end_matches(',').to_string();
    (child, kind, addr, err)
}

impl Drop for DeviceProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `zepto send` with its state in `state_dir`.
pub fn send(state_dir: &Path, key: &str, link: &[String], extra: &[&str]) -> Output {
    Command::new(ZEPTO)
        .arg("send")
        .args(["--key", key])
        .args(link)
        .args(extra)
        .env("ZEPTO_STATE_DIR", state_dir)
        .output()
        .expect("run zepto send")
}

/// The JSON reply of a successful `zepto send --json`.
pub fn json_reply(out: &Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "send failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("one JSON object")
}

/// The state files (not their lock files) in `dir` whose name starts with `role`.
pub fn state_files(dir: &Path, role: &str) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.extension().is_some_and(|e| e == "state")
                && p.file_name().unwrap().to_string_lossy().starts_with(role)
        })
        .collect()
}
