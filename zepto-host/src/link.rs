//! Packet links of the host: UDP (one datagram = one packet) and byte streams (serial
//! devices, ptys, TCP) that carry SADLP frames.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs, UdpSocket};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use crate::framing::{Deframer, Framer};

/// Largest packet a link carries.
pub const MAX_PACKET: usize = 512;

/// Where a packet came from on a link with addresses (UDP); `None` on a stream.
pub type Source = Option<SocketAddr>;

/// A bidirectional packet link.
pub trait Link: Send {
    /// Sends one packet to the peer.
    fn send(&mut self, packet: &[u8]) -> io::Result<()>;
    /// Waits up to `timeout` (forever if `None`) for one packet; returns it with
    /// its source.
    fn recv(&mut self, timeout: Option<Duration>) -> io::Result<Option<(Vec<u8>, Source)>>;
    /// A short description for logs ("udp 127.0.0.1:7000").
    fn describe(&self) -> String;
    /// Makes `source` the peer that [`Link::send`] sends to. Only a packet that
    /// passed SASP with a fresh nonce may name it (`PacketBus::accept_source`).
    fn set_peer(&mut self, _source: Source) {}
    /// Sends one packet to `source` without making it the peer.
    fn send_to(&mut self, packet: &[u8], _source: Source) -> io::Result<()> {
        self.send(packet)
    }
}

/// One datagram = one packet.
#[derive(Debug)]
pub struct UdpLink {
    socket: UdpSocket,
    /// Device side: the authenticated peer (replies go there).
    peer: Option<SocketAddr>,
    connected: bool,
}

impl UdpLink {
    /// Device side: listens on `addr`; replies go to the peer the device
    /// authenticated last ([`Link::set_peer`]).
    pub fn bind(addr: &str) -> io::Result<Self> {
        Ok(Self {
            socket: UdpSocket::bind(addr)?,
            peer: None,
            connected: false,
        })
    }

    /// Client side: talks to the device at `addr` (and hears only it).
    pub fn connect(addr: &str) -> io::Result<Self> {
        let target = addr
            .to_socket_addrs()?
            .next()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no address"))?;
        let local: SocketAddr = if target.is_ipv4() {
            "0.0.0.0:0".parse().map_err(io::Error::other)?
        } else {
            "[::]:0".parse().map_err(io::Error::other)?
        };
        let socket = UdpSocket::bind(local)?;
        socket.connect(target)?;
        Ok(Self {
            socket,
            peer: Some(target),
            connected: true,
        })
    }

    /// The local address (useful when bound to port 0).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.socket.local_addr()
    }
}

impl Link for UdpLink {
    fn send(&mut self, packet: &[u8]) -> io::Result<()> {
        if self.connected {
            self.socket.send(packet)?;
        } else {
            let peer = self
                .peer
                .ok_or_else(|| io::Error::new(io::ErrorKind::NotConnected, "no peer yet"))?;
            self.socket.send_to(packet, peer)?;
        }
        Ok(())
    }

    fn recv(&mut self, timeout: Option<Duration>) -> io::Result<Option<(Vec<u8>, Source)>> {
        // A zero timeout means "block" to the socket API: use 1 ms instead.
        self.socket
            .set_read_timeout(timeout.map(|t| t.max(Duration::from_millis(1))))?;
        let mut buf = vec![0u8; MAX_PACKET + 1];
        let res = if self.connected {
            self.socket.recv(&mut buf).map(|n| (n, self.peer))
        } else {
            self.socket.recv_from(&mut buf).map(|(n, a)| (n, Some(a)))
        };
        match res {
            Ok((n, from)) => {
                buf.truncate(n);
                Ok(Some((buf, from)))
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    fn describe(&self) -> String {
        match (self.connected, self.peer, self.socket.local_addr()) {
            (true, Some(p), _) => format!("udp {p}"),
            (_, _, Ok(l)) => format!("udp {l}"),
            _ => "udp".into(),
        }
    }

    fn set_peer(&mut self, source: Source) {
        if !self.connected && source.is_some() {
            self.peer = source;
        }
    }

    fn send_to(&mut self, packet: &[u8], source: Source) -> io::Result<()> {
        match source {
            Some(a) if !self.connected => self.socket.send_to(packet, a).map(|_| ()),
            _ => self.send(packet),
        }
    }
}

/// A byte stream carrying SADLP frames. A reader thread decodes frames (skipping
/// garbage and text between them) and queues the packets.
pub struct StreamLink {
    writer: Box<dyn Write + Send>,
    packets: Receiver<io::Result<Vec<u8>>>,
    framer: Framer,
    name: String,
    /// A descriptor held open for the link's lifetime (the pty slave).
    keep_open: Option<std::fs::File>,
}

impl StreamLink {
    /// Wraps a reader and a writer of the same stream.
    pub fn new(
        reader: impl Read + Send + 'static,
        writer: impl Write + Send + 'static,
        name: String,
    ) -> Self {
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            let mut reader = reader;
            let mut deframer = Deframer::default();
            let mut buf = [0u8; 256];
            loop {
                match reader.read(&mut buf) {
                    Ok(0) => {
                        let _ = tx.send(Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "stream closed",
                        )));
                        return;
                    }
                    Ok(n) => {
                        for packet in deframer.push(buf.get(..n).unwrap_or(&[])) {
                            if tx.send(Ok(packet)).is_err() {
                                return;
                            }
                        }
                    }
                    Err(e)
                        if matches!(
                            e.kind(),
                            io::ErrorKind::Interrupted
                                | io::ErrorKind::WouldBlock
                                | io::ErrorKind::TimedOut
                        ) => {}
                    Err(e) => {
                        let _ = tx.send(Err(e));
                        return;
                    }
                }
            }
        });
        Self {
            writer: Box::new(writer),
            packets: rx,
            framer: Framer,
            name,
            keep_open: None,
        }
    }

    /// Opens a serial device (or pty) at `path`.
    pub fn serial(path: &str, baud: u32) -> io::Result<Self> {
        let port = serialport::new(path, baud)
            .timeout(Duration::from_millis(100))
            .open_native()
            .map_err(|e| io::Error::other(format!("{path}: {e}")))?;
        let reader = port.try_clone_native().map_err(io::Error::other)?;
        Ok(Self::new(reader, port, format!("serial {path}")))
    }

    /// Connects to a TCP byte stream (e.g. QEMU's `-serial tcp::PORT,server`).
    pub fn tcp_connect(addr: &str) -> io::Result<Self> {
        let s = TcpStream::connect(addr)?;
        s.set_nodelay(true)?;
        let r = s.try_clone()?;
        Ok(Self::new(r, s, format!("tcp {addr}")))
    }

    /// Listens on `addr` and serves one TCP connection after another (a client such
    /// as `zepto send` connects once per command). Returns the link and the bound
    /// address (useful with port 0).
    pub fn tcp_server(addr: &str) -> io::Result<(Self, SocketAddr)> {
        let listener = TcpListener::bind(addr)?;
        let local = listener.local_addr()?;
        let current = Arc::new(Mutex::new(None));
        let reader = AcceptingReader {
            listener,
            current: Arc::clone(&current),
            stream: None,
        };
        let writer = SharedWriter(current);
        Ok((Self::new(reader, writer, format!("tcp {local}")), local))
    }
}

/// Reads from the current TCP connection, accepting a new one whenever the previous
/// one closed; never reports end of stream.
struct AcceptingReader {
    listener: TcpListener,
    current: Arc<Mutex<Option<TcpStream>>>,
    stream: Option<TcpStream>,
}

impl Read for AcceptingReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if self.stream.is_none() {
                let (s, _) = self.listener.accept()?;
                s.set_nodelay(true)?;
                let w = s.try_clone()?;
                *self
                    .current
                    .lock()
                    .map_err(|_| io::Error::other("poisoned"))? = Some(w);
                self.stream = Some(s);
            }
            let Some(s) = self.stream.as_mut() else {
                continue;
            };
            match s.read(buf) {
                Ok(0) | Err(_) => {
                    self.stream = None;
                    if let Ok(mut c) = self.current.lock() {
                        *c = None;
                    }
                }
                Ok(n) => return Ok(n),
            }
        }
    }
}

/// Writes to the current TCP connection; with none, the bytes are dropped (like a
/// radio with nobody listening).
struct SharedWriter(Arc<Mutex<Option<TcpStream>>>);

impl Write for SharedWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut c = self.0.lock().map_err(|_| io::Error::other("poisoned"))?;
        match c.as_mut() {
            Some(s) => s.write(buf),
            None => Ok(buf.len()),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        let mut c = self.0.lock().map_err(|_| io::Error::other("poisoned"))?;
        match c.as_mut() {
            Some(s) => s.flush(),
            None => Ok(()),
        }
    }
}

impl Link for StreamLink {
    fn send(&mut self, packet: &[u8]) -> io::Result<()> {
        let frame = self.framer.encode(packet)?;
        self.writer.write_all(&frame)?;
        self.writer.flush()
    }

    fn recv(&mut self, timeout: Option<Duration>) -> io::Result<Option<(Vec<u8>, Source)>> {
        let r = match timeout {
            Some(t) => self.packets.recv_timeout(t),
            None => self
                .packets
                .recv()
                .map_err(|_| RecvTimeoutError::Disconnected),
        };
        match r {
            Ok(p) => p.map(|p| Some((p, None))),
            Err(RecvTimeoutError::Timeout) => Ok(None),
            Err(RecvTimeoutError::Disconnected) => Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "stream closed",
            )),
        }
    }

    fn describe(&self) -> String {
        self.name.clone()
    }
}

/// Opens a new pseudo-terminal pair; returns the link on the master side and the
/// path of the slave side, which a client opens as a serial port.
///
/// The link keeps a slave descriptor open itself, so the master never reads EIO while
/// no client has the port open.
pub fn open_pty() -> io::Result<(StreamLink, String)> {
    use nix::fcntl::OFlag;
    use nix::pty::{grantpt, posix_openpt, ptsname_r, unlockpt};
    use nix::sys::termios::{cfmakeraw, tcgetattr, tcsetattr, SetArg};
    use std::fs::File;
    use std::os::fd::{AsFd, OwnedFd};

    let master = posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY).map_err(io::Error::other)?;
    grantpt(&master).map_err(io::Error::other)?;
    unlockpt(&master).map_err(io::Error::other)?;
    let path = ptsname_r(&master).map_err(io::Error::other)?;
    // Raw mode on the slave side, so no byte is translated or echoed.
    let slave = File::options().read(true).write(true).open(&path)?;
    let mut t = tcgetattr(slave.as_fd()).map_err(io::Error::other)?;
    cfmakeraw(&mut t);
    tcsetattr(slave.as_fd(), SetArg::TCSANOW, &t).map_err(io::Error::other)?;
    let file = File::from(OwnedFd::from(master));
    let reader = file.try_clone()?;
    let mut link = StreamLink::new(reader, file, format!("pty {path}"));
    link.keep_open = Some(slave);
    Ok((link, path))
}
