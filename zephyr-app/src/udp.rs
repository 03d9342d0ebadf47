//! The packet bus of the UDP transport (`CONFIG_ZEPTO_TRANSPORT_UDP`): one datagram
//! is one packet, on `CONFIG_ZEPTO_UDP_PORT`, through Zephyr's BSD socket API (udp.c).
//!
//! The pump thread receives (without blocking) and sends itself. It sleeps on its
//! wake semaphore like with the UART: a watcher thread in udp.c waits in
//! `zsock_poll` for a datagram, gives the semaphore, and waits until the pump has
//! read every queued datagram, so nothing polls on a timer.
//!
//! Addresses follow zepto-kernel's [`Peer`] rules: replies and resends go to the
//! source of the last packet that passed SASP with a fresh nonce
//! ([`UdpLink::accept_source`]), never to whoever sent the last datagram; the
//! "old nonce" answer goes to the last source without making it the peer.

use core::ffi::c_int;

use zephyr::kconfig;
use zepto_kernel::datagram::{datagram_len, Peer};
use zepto_kernel::Error;

use crate::hal::MAX_PACKET;

/// An IPv4 address and port, as udp.c passes it (port in host byte order).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct UdpAddr {
    /// IPv4 address, network order (a.b.c.d = [a, b, c, d]).
    pub addr: [u8; 4],
    /// UDP port.
    pub port: u16,
}

extern "C" {
    fn zepto_udp_open(port: u16) -> c_int;
    fn zepto_udp_pending() -> bool;
    fn zepto_udp_recv(buf: *mut u8, len: usize, from: *mut UdpAddr) -> isize;
    fn zepto_udp_send(buf: *const u8, len: usize, to: *const UdpAddr) -> c_int;
}

/// Receive buffer: one byte more than the largest packet, to see longer datagrams.
const RX_LEN: usize = MAX_PACKET + 1;

/// The UDP packet bus.
pub struct UdpLink {
    peer: Peer<UdpAddr>,
    port: u16,
}

impl UdpLink {
    /// Opens a UDP socket bound to `CONFIG_ZEPTO_UDP_PORT` on every interface;
    /// `None` if the network stack refused.
    pub fn open() -> Option<UdpLink> {
        let port = u16::try_from(kconfig::CONFIG_ZEPTO_UDP_PORT).ok()?;
        // SAFETY: plain call into udp.c.
        let rc = unsafe { zepto_udp_open(port) };
        if rc != 0 {
            say!("zepto: UDP port ", port, " could not be opened (", rc, ")");
            return None;
        }
        Some(UdpLink {
            peer: Peer::new(),
            port,
        })
    }

    /// For the start-up message.
    pub fn describe(&self) -> &'static str {
        "UDP datagrams"
    }

    /// The bound UDP port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// True if datagrams wait in the socket.
    pub fn rx_pending(&self) -> bool {
        // SAFETY: plain call into udp.c.
        unsafe { zepto_udp_pending() }
    }

    /// True while datagrams wait (the pump then polls again at once).
    pub fn busy(&self) -> bool {
        self.rx_pending()
    }

    /// Datagrams are whole: nothing is ever half received.
    pub fn abandon_partial_frame(&mut self) {}

    /// Takes the next datagram, if any, into `buf`; empty datagrams are skipped and
    /// longer ones than [`MAX_PACKET`] dropped ([`Error::BufferTooSmall`]).
    pub fn receive(&mut self, buf: &mut [u8]) -> Result<Option<usize>, Error> {
        loop {
            let mut rx = [0u8; RX_LEN];
            let mut from = UdpAddr::default();
            // SAFETY: `rx` is valid for writes of RX_LEN bytes and `from` for one
            // UdpAddr.
            let n = unsafe { zepto_udp_recv(rx.as_mut_ptr(), rx.len(), &mut from) };
            let Ok(n) = usize::try_from(n) else {
                // -EAGAIN: nothing waits (any other error: the socket is unusable
                // now; the watcher wakes the pump when it is readable again).
                return Ok(None);
            };
            self.peer.received(from);
            let Some(len) = datagram_len(n, MAX_PACKET.min(buf.len()))? else {
                continue;
            };
            let src = rx.get(..len).ok_or(Error::BufferTooSmall)?;
            let dst = buf.get_mut(..len).ok_or(Error::BufferTooSmall)?;
            dst.copy_from_slice(src);
            return Ok(Some(len));
        }
    }

    fn send_to(packet: &[u8], to: UdpAddr) -> Result<(), Error> {
        // SAFETY: `packet` is valid for reads of its length, `to` for one UdpAddr.
        match unsafe { zepto_udp_send(packet.as_ptr(), packet.len(), &to) } {
            0 => Ok(()),
            _ => Err(Error::Bus),
        }
    }

    /// Sends a packet of the device (a reply, a resend) to the authenticated peer;
    /// before the first authenticated packet there is none and nothing is sent.
    pub fn send(&mut self, packet: &[u8]) -> Result<(), Error> {
        Self::send_to(packet, self.peer.send_to()?)
    }

    /// The last packet passed SASP with a fresh nonce: its source becomes the peer.
    pub fn accept_source(&mut self) {
        if self.peer.accept() {
            if let Some(p) = self.peer.peer() {
                let [a, b, c, d] = p.addr;
                say!("zepto: peer ", a, ".", b, ".", c, ".", d, ":", p.port);
            }
        }
    }

    /// Answers the last datagram's source without making it the peer.
    pub fn reply(&mut self, packet: &[u8]) -> Result<(), Error> {
        Self::send_to(packet, self.peer.reply_to()?)
    }
}
