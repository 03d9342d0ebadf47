//! A UDP relay between clients and a device that records every datagram, so tests
//! can assert on what went over the wire.

use std::collections::HashMap;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// Which way a datagram went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dir {
    /// From a client to the device.
    ToDevice,
    /// From the device to a client.
    ToClient,
}

/// One recorded datagram.
#[derive(Debug, Clone)]
pub struct Datagram {
    /// Direction.
    pub dir: Dir,
    /// The client's address (source or destination).
    pub client: SocketAddr,
    /// The bytes.
    pub bytes: Vec<u8>,
}

/// A running relay; stops on drop.
pub struct Relay {
    /// Where clients send to.
    pub addr: SocketAddr,
    /// Every datagram so far, in order.
    pub log: Arc<Mutex<Vec<Datagram>>>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    device: Arc<Mutex<SocketAddr>>,
}

impl Relay {
    /// A relay on a free loopback port in front of the device at `device`.
    pub fn start(device: &str) -> Self {
        let front = UdpSocket::bind("127.0.0.1:0").unwrap();
        front
            .set_read_timeout(Some(Duration::from_millis(20)))
            .unwrap();
        let addr = front.local_addr().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let device = Arc::new(Mutex::new(device.parse::<SocketAddr>().unwrap()));
        let (l, s, d) = (Arc::clone(&log), Arc::clone(&stop), Arc::clone(&device));
        let t = std::thread::spawn(move || front_loop(front, l, s, d));
        Relay {
            addr,
            log,
            stop,
            threads: vec![t],
            device,
        }
    }

    /// Points the relay at a device that moved (restarted on another port).
    pub fn set_device(&self, device: &str) {
        *self.device.lock().unwrap() = device.parse().unwrap();
    }

    /// `zepto send` arguments that go through the relay.
    pub fn link_args(&self) -> Vec<String> {
        vec!["--udp".into(), self.addr.to_string()]
    }

    /// The datagrams recorded so far.
    pub fn datagrams(&self) -> Vec<Datagram> {
        self.log.lock().unwrap().clone()
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// Forwards client datagrams to the device, one upstream socket per client (so the
/// device sees each client at its own address), and starts a thread per upstream
/// socket that carries the device's answers back.
fn front_loop(
    front: UdpSocket,
    log: Arc<Mutex<Vec<Datagram>>>,
    stop: Arc<AtomicBool>,
    device: Arc<Mutex<SocketAddr>>,
) {
    let front = Arc::new(front);
    let mut upstream: HashMap<SocketAddr, Arc<UdpSocket>> = HashMap::new();
    let mut back = Vec::new();
    let mut buf = [0u8; 2048];
    while !stop.load(Ordering::Relaxed) {
        let Ok((n, client)) = front.recv_from(&mut buf) else {
            continue;
        };
        let bytes = buf[..n].to_vec();
        let up = upstream.entry(client).or_insert_with(|| {
            let s = Arc::new(UdpSocket::bind("127.0.0.1:0").unwrap());
            s.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
            let (s2, f2, l2, st2) = (
                Arc::clone(&s),
                Arc::clone(&front),
                Arc::clone(&log),
                Arc::clone(&stop),
            );
            back.push(std::thread::spawn(move || {
                let mut b = [0u8; 2048];
                while !st2.load(Ordering::Relaxed) {
                    if let Ok(n) = s2.recv(&mut b) {
                        let bytes = b[..n].to_vec();
                        l2.lock().unwrap().push(Datagram {
                            dir: Dir::ToClient,
                            client,
                            bytes: bytes.clone(),
                        });
                        let _ = f2.send_to(&bytes, client);
                    }
                }
            }));
            s
        });
        log.lock().unwrap().push(Datagram {
            dir: Dir::ToDevice,
            client,
            bytes: bytes.clone(),
        });
        let to = *device.lock().unwrap();
        let _ = up.send_to(&bytes, to);
    }
    for t in back {
        let _ = t.join();
    }
}

/// The 47-bit nonce of an SASP packet's 6-byte header.
pub fn nonce(packet: &[u8]) -> Option<u64> {
    let h = packet.get(..6)?;
    let raw = h
        .iter()
        .rev()
        .fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
    Some(raw & ((1 << 47) - 1))
}

/// Asserts that no nonce carried two different packets in either direction;
/// returns (packets, distinct nonces) per direction.
pub fn assert_no_nonce_reuse(log: &[Datagram]) -> HashMap<Dir, (usize, usize)> {
    let mut seen: HashMap<(Dir, u64), Vec<u8>> = HashMap::new();
    let mut counts: HashMap<Dir, (usize, usize)> = HashMap::new();
    for d in log {
        let Some(n) = nonce(&d.bytes) else { continue };
        let c = counts.entry(d.dir).or_default();
        c.0 += 1;
        match seen.get(&(d.dir, n)) {
            Some(first) => assert_eq!(
                first, &d.bytes,
                "{:?}: nonce {n} carried two different packets",
                d.dir
            ),
            None => {
                c.1 += 1;
                seen.insert((d.dir, n), d.bytes.clone());
            }
        }
    }
    counts
}

/// The lowest and highest nonce seen in direction `dir`, and how many times the
/// sorted nonces jump by `jump` or more.
pub fn nonce_span(log: &[Datagram], dir: Dir, jump: u64) -> Option<(u64, u64, usize)> {
    let mut v: Vec<u64> = log
        .iter()
        .filter(|d| d.dir == dir)
        .filter_map(|d| nonce(&d.bytes))
        .collect();
    v.sort_unstable();
    let jumps = v.windows(2).filter(|w| w[1] - w[0] >= jump).count();
    Some((*v.first()?, *v.last()?, jumps))
}
