//! Datagram buses (UDP, radios with addresses): one datagram is one packet, and
//! replies go to the authenticated peer only.
//!
//! The OS side of such a bus (a socket) is the port's; what does not depend on the
//! OS is here, so every port follows the same rules (`docs/security.md`, "Replies go
//! to the authenticated peer"):
//!
//! * each received datagram is checked with [`datagram_len`] (empty: ignored; longer
//!   than the MTU: dropped, never cut) and its source recorded with
//!   [`Peer::received`];
//! * [`PacketBus::accept_source`](crate::hal::PacketBus::accept_source), which the
//!   pump calls only for a packet that passed SASP with a fresh nonce, is
//!   [`Peer::accept`]: only then does the source become the peer;
//! * [`PacketBus::send`](crate::hal::PacketBus::send) (replies, resends) goes to
//!   [`Peer::send_to`], the peer; before any authenticated packet there is none and
//!   nothing is sent;
//! * [`PacketBus::reply_in_place`](crate::hal::PacketBus::reply_in_place) (the "old
//!   nonce" answer) goes to [`Peer::reply_to`], the last source, which does not
//!   become the peer.
//!
//! `A` is the port's address type (e.g. a socket address); it only needs to be
//! copied and compared.

use crate::error::Error;

/// The addresses a datagram bus answers: the last source and the authenticated peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer<A> {
    source: Option<A>,
    peer: Option<A>,
}

impl<A> Default for Peer<A> {
    fn default() -> Self {
        Self::new()
    }
}

impl<A> Peer<A> {
    /// No source seen, no peer.
    pub const fn new() -> Self {
        Self {
            source: None,
            peer: None,
        }
    }
}

impl<A: Copy + PartialEq> Peer<A> {
    /// A datagram came from `from` (not yet authenticated): it becomes the last
    /// source, and nothing else changes.
    pub fn received(&mut self, from: A) {
        self.source = Some(from);
    }

    /// The packet of the last datagram passed SASP: its source becomes the peer.
    /// Returns true if the peer changed (a new peer, or the first one).
    pub fn accept(&mut self) -> bool {
        match self.source {
            Some(s) if self.peer != Some(s) => {
                self.peer = Some(s);
                true
            }
            _ => false,
        }
    }

    /// The authenticated peer, if any.
    pub const fn peer(&self) -> Option<A> {
        self.peer
    }

    /// Where a packet of the device goes (a reply or a resend): the peer.
    /// [`Error::InvalidState`] before any authenticated packet (send nothing).
    pub fn send_to(&self) -> Result<A, Error> {
        self.peer.ok_or(Error::InvalidState)
    }

    /// Where an answer to the last datagram goes without making its source the peer
    /// (the "old nonce" message): the last source. [`Error::InvalidState`] if none.
    pub fn reply_to(&self) -> Result<A, Error> {
        self.source.ok_or(Error::InvalidState)
    }
}

/// Checks the length of a received datagram for a bus whose packets are at most
/// `mtu` bytes. The port receives into at least `mtu + 1` bytes and passes the length
/// the socket reported, so a longer datagram is seen even if the socket cut it.
///
/// `Ok(None)` for an empty datagram (ignored), `Ok(Some(len))` for a packet,
/// [`Error::BufferTooSmall`] for one longer than `mtu` (dropped whole: a cut packet
/// would only fail authentication later).
pub fn datagram_len(len: usize, mtu: usize) -> Result<Option<usize>, Error> {
    match len {
        0 => Ok(None),
        n if n > mtu => Err(Error::BufferTooSmall),
        n => Ok(Some(n)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Addr = ([u8; 4], u16);
    const CLIENT: Addr = ([127, 0, 0, 1], 40000);
    const ATTACKER: Addr = ([127, 0, 0, 1], 40001);

    #[test]
    fn nothing_is_sent_before_an_authenticated_packet() {
        let mut p = Peer::<Addr>::new();
        assert_eq!(p.send_to(), Err(Error::InvalidState));
        assert_eq!(p.reply_to(), Err(Error::InvalidState));
        p.received(ATTACKER);
        assert_eq!(p.send_to(), Err(Error::InvalidState));
        assert_eq!(p.reply_to(), Ok(ATTACKER));
        assert_eq!(p.peer(), None);
    }

    #[test]
    fn only_an_accepted_source_becomes_the_peer() {
        let mut p = Peer::<Addr>::new();
        p.received(CLIENT);
        assert!(p.accept());
        assert_eq!(p.send_to(), Ok(CLIENT));
        // Garbage or a replay from elsewhere: the pump does not accept it.
        p.received(ATTACKER);
        assert_eq!(p.send_to(), Ok(CLIENT));
        assert_eq!(p.reply_to(), Ok(ATTACKER));
        // The real client again: accepted, the peer does not change.
        p.received(CLIENT);
        assert!(!p.accept());
        assert_eq!(p.send_to(), Ok(CLIENT));
    }

    #[test]
    fn a_client_that_moves_is_followed_once_authenticated() {
        let mut p = Peer::<Addr>::new();
        p.received(CLIENT);
        p.accept();
        let moved: Addr = ([127, 0, 0, 1], 40002);
        p.received(moved);
        assert_eq!(p.send_to(), Ok(CLIENT));
        assert!(p.accept());
        assert_eq!(p.send_to(), Ok(moved));
    }

    #[test]
    fn accept_without_a_datagram_changes_nothing() {
        let mut p = Peer::<Addr>::new();
        assert!(!p.accept());
        assert_eq!(p, Peer::default());
    }

    #[test]
    fn datagram_lengths() {
        assert_eq!(datagram_len(0, 128), Ok(None));
        assert_eq!(datagram_len(1, 128), Ok(Some(1)));
        assert_eq!(datagram_len(128, 128), Ok(Some(128)));
        assert_eq!(datagram_len(129, 128), Err(Error::BufferTooSmall));
        assert_eq!(datagram_len(usize::MAX, 128), Err(Error::BufferTooSmall));
    }
}
