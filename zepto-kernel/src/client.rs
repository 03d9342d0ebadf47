//! The client ("master") side of the stack: what a host, a gateway or a local IPC
//! client uses to send programs to a device and get the replies.
//!
//! A [`Client`] builds an SACCP command, wraps it in SAGDP (as the first packet of a
//! chain) and SASP, and hands the packet to the caller to transmit. Packets from the
//! device go to [`Client::receive`]; [`Client::poll`] resends on SAGDP's timer. The
//! transport is the caller's, so the same code runs over UDP, a serial line or an
//! in-memory test link. Like the device side it is `no_std` and allocation-free.

use crate::error::{Error, HandlerOutcome};
use crate::hal::{Clock, Random, Storage};
use crate::heap::{Handle, Heap, HeapMem};
use crate::nonce_store::{key_id, BlankStart, NonceStore};
use crate::saccp::client::{self as saccp_client, Reply};
use crate::saccp::ExtraHeaders;
use crate::sagdp::{
    Config as SagdpConfig, EitherRole, PacketId, PacketStatus, Role as SagdpRole, Sagdp, State,
};
use crate::sasp::{self, DefaultCipher, Role, Sasp, SaspCipher};

/// What the client needs from its platform.
pub trait ClientHal: Clock + Storage + Random {}

impl<T: Clock + Storage + Random + ?Sized> ClientHal for T {}

/// Where a client keeps its nonces and how it resends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientConfig {
    /// Storage address of the SASP nonce records.
    pub nonce_base: usize,
    /// Nonces covered by one storage write (see [`NonceStore::open`]).
    pub nonce_reserve: u32,
    /// How the records start when storage holds none for the key.
    pub blank: BlankStart,
    /// SAGDP's resend timing (how long to wait, how often to resend before giving
    /// up).
    pub timing: SagdpConfig,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            nonce_base: 0,
            nonce_reserve: 64,
            blank: BlankStart::RandomHigh,
            timing: SagdpConfig::MASTER,
        }
    }
}

/// What a received packet meant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientEvent {
    /// Nothing for the caller (duplicate, stale, resync message, forged packet).
    Nothing,
    /// A packet must be sent to the device: see [`Client::outgoing`].
    Send,
    /// The device's packet carried a nonce this client saw before: send
    /// [`Client::outgoing`] (an "old nonce" message that moves the device's counter
    /// up), then [`Client::resend_now`], whose repeat makes the device send its reply
    /// again under a fresh nonce.
    Resync,
    /// The reply to the outstanding command arrived: see [`Client::reply`].
    Reply,
}

/// The client end of a device link. `N` and `B` size its heap (the largest command or
/// reply plus headers must fit twice).
pub struct Client<C: SaspCipher = DefaultCipher, const N: usize = 1024, const B: usize = 4> {
    mem: HeapMem<N, B>,
    h: Handle,
    sasp: Sasp<C>,
    sagdp: Sagdp<EitherRole>,
    has_reply: bool,
    /// When old nonces below the highest answered may be answered again.
    old_window_ms: u64,
}

impl<C: SaspCipher, const N: usize, const B: usize> Client<C, N, B> {
    /// A client with `key`, its nonces kept in `hal`'s storage as `cfg` says (blank
    /// storage starts as [`ClientConfig::blank`] says).
    pub fn new<H: Storage + Random + ?Sized>(
        key: &[u8; 16],
        hal: &mut H,
        cfg: ClientConfig,
    ) -> Result<Self, Error> {
        let kid = key_id::<C>(key)?;
        let nonces = NonceStore::open(hal, cfg.nonce_base, cfg.nonce_reserve, kid, cfg.blank)?;
        let sasp = Sasp::new(key, Role::Client, nonces)?;
        let mut mem = HeapMem::new();
        let h = mem.heap().alloc()?;
        let mut sagdp = Sagdp::new(SagdpRole::Master, cfg.timing);
        sagdp.init(&mut mem.heap())?;
        Ok(Self {
            mem,
            h,
            sasp,
            sagdp,
            has_reply: false,
            old_window_ms: 0,
        })
    }

    /// True while a command waits for its reply.
    pub fn busy(&self) -> bool {
        self.sagdp.state() == State::WaitRemote
    }

    /// SASP counters of this end.
    pub const fn sasp_stats(&self) -> &sasp::SaspStats {
        self.sasp.stats()
    }

    /// The nonce state (NFS, NLW, writes, whether it started blank).
    pub const fn nonces(&self) -> &NonceStore {
        self.sasp.nonces()
    }

    /// The packet to transmit after [`Client::send_program`], [`Client::poll`] or a
    /// [`ClientEvent::Send`].
    pub fn outgoing(&self) -> &[u8] {
        self.mem.request(self.h).unwrap_or(&[])
    }

    /// The SACCP reply after [`ClientEvent::Reply`] (decode it with
    /// [`Client::decoded_reply`]).
    pub fn reply(&self) -> &[u8] {
        if self.has_reply {
            self.mem.request(self.h).unwrap_or(&[])
        } else {
            &[]
        }
    }

    /// The SACCP reply, decoded: OK with the VM's reply buffer, an exception, or an
    /// SACCP error.
    pub fn decoded_reply(&self) -> Result<Reply<'_>, Error> {
        saccp_client::decode_reply(self.reply())
    }

    /// Persists the exact nonce state, so that the next client on this storage needs
    /// no resynchronisation with the device (call it when the client is done).
    pub fn checkpoint<S: Storage + ?Sized>(&mut self, storage: &mut S) -> Result<(), Error> {
        self.sasp.checkpoint(storage)
    }

    /// Resends the outstanding command now (e.g. right after answering the device
    /// with an "old nonce" message, instead of waiting for the timer). Returns the
    /// packet, or `None` when no command waits.
    pub fn resend_now<H: ClientHal + ?Sized>(
        &mut self,
        hal: &mut H,
    ) -> Result<Option<&[u8]>, Error> {
        if !self.busy() {
            return Ok(None);
        }
        let h = self.h;
        let now = hal.now_ms();
        let sasp = &mut self.sasp;
        let mut ids = || sasp.reserve_packet_id(hal).map(PacketId::from_bytes);
        match self
            .sagdp
            .request_resend(&mut self.mem.heap(), h, now, &mut ids)?
        {
            HandlerOutcome::ReplyDown => {
                self.mem.heap().convert_reply_to_request(h)?;
                self.seal(hal)?;
                Ok(Some(self.outgoing()))
            }
            _ => Ok(None),
        }
    }

    /// Milliseconds until [`Client::poll`] has a resend to make, if a command waits.
    pub fn next_timeout_ms(&self, now_ms: u64) -> Option<u64> {
        self.sagdp.next_timeout_ms(now_ms)
    }

    /// Builds the packet that asks the device to run `program` (SACCP NEW_PROGRAM)
    /// and returns it for transmission.
    pub fn send_program<H: ClientHal + ?Sized>(
        &mut self,
        hal: &mut H,
        program: &[u8],
    ) -> Result<&[u8], Error> {
        self.send_command(hal, |heap, h| {
            saccp_client::build_new_program(heap, h, &ExtraHeaders::default(), program)
        })
    }

    /// Builds a packet around the SACCP command that `build` writes as the reply of
    /// the given handle (see [`crate::saccp::client`] for REPEAT and REUSE commands).
    pub fn send_command<H: ClientHal + ?Sized>(
        &mut self,
        hal: &mut H,
        build: impl FnOnce(&mut Heap<'_>, Handle) -> Result<(), Error>,
    ) -> Result<&[u8], Error> {
        if self.busy() {
            return Err(Error::InvalidState);
        }
        let h = self.h;
        self.has_reply = false;
        self.mem.heap().set_request(h, &[])?;
        build(&mut self.mem.heap(), h)?;
        self.mem.heap().convert_reply_to_request(h)?;
        let now = hal.now_ms();
        let sasp = &mut self.sasp;
        let mut ids = || sasp.reserve_packet_id(hal).map(PacketId::from_bytes);
        self.sagdp
            .send(&mut self.mem.heap(), h, PacketStatus::First, now, &mut ids)?;
        self.mem.heap().convert_reply_to_request(h)?;
        self.seal(hal)?;
        Ok(self.outgoing())
    }

    /// Encrypts the SAGDP packet in the request into the outgoing packet.
    fn seal<H: ClientHal + ?Sized>(&mut self, hal: &mut H) -> Result<(), Error> {
        let h = self.h;
        self.sasp
            .send_announced(&mut self.mem.heap(), h, hal, None)?;
        self.mem.heap().convert_reply_to_request(h).map(drop)
    }

    /// Handles a packet from the device.
    pub fn receive<H: ClientHal + ?Sized>(
        &mut self,
        hal: &mut H,
        packet: &[u8],
    ) -> Result<ClientEvent, Error> {
        let h = self.h;
        // The outgoing packet is no longer needed: SAGDP keeps its own copy.
        self.has_reply = false;
        self.mem.heap().set_request(h, packet)?;
        let now = hal.now_ms();
        // Replayed device packets get few answers (see `sasp::OLD_NONCE_ANSWER_GAP_MS`).
        self.sasp.open_old_nonce_window(now >= self.old_window_ms);
        match self.sasp.receive(&mut self.mem.heap(), h, hal)? {
            HandlerOutcome::Pass => {
                self.mem.heap().convert_reply_to_request(h)?;
            }
            HandlerOutcome::ReplyDown => {
                self.old_window_ms = now.saturating_add(sasp::OLD_NONCE_ANSWER_GAP_MS);
                self.mem.heap().convert_reply_to_request(h)?;
                return Ok(ClientEvent::Resync);
            }
            _ if self.sasp.last_sent_refused() => {
                // An "old nonce" message refused our last packet: the command goes
                // again at once under a fresh nonce, not on the resend timer.
                return Ok(match self.resend_now(hal)? {
                    Some(_) => ClientEvent::Send,
                    None => ClientEvent::Nothing,
                });
            }
            _ => return Ok(ClientEvent::Nothing),
        }
        let pid = PacketId::from_bytes(self.sasp.last_received_pid().ok_or(Error::InvalidState)?);
        let now = hal.now_ms();
        let sasp = &mut self.sasp;
        let mut ids = || sasp.reserve_packet_id(hal).map(PacketId::from_bytes);
        match self
            .sagdp
            .receive(&mut self.mem.heap(), h, pid, now, &mut ids)?
        {
            HandlerOutcome::Pass => {
                self.mem.heap().convert_reply_to_request(h)?;
                self.has_reply = true;
                Ok(ClientEvent::Reply)
            }
            HandlerOutcome::ReplyDown => {
                self.mem.heap().convert_reply_to_request(h)?;
                self.seal(hal)?;
                Ok(ClientEvent::Send)
            }
            _ => Ok(ClientEvent::Nothing),
        }
    }

    /// Resends the command when SAGDP's timer is due; returns the packet to transmit.
    /// Fails with [`Error::Timeout`] when SAGDP gave up (the command is dropped).
    pub fn poll<H: ClientHal + ?Sized>(&mut self, hal: &mut H) -> Result<Option<&[u8]>, Error> {
        let now = hal.now_ms();
        if self.sagdp.next_timeout_ms(now) != Some(0) {
            return Ok(None);
        }
        let h = self.h;
        let sasp = &mut self.sasp;
        let mut ids = || sasp.reserve_packet_id(hal).map(PacketId::from_bytes);
        match self
            .sagdp
            .on_timeout(&mut self.mem.heap(), h, now, &mut ids)?
        {
            HandlerOutcome::ReplyDown => {
                self.mem.heap().convert_reply_to_request(h)?;
                self.seal(hal)?;
                Ok(Some(self.outgoing()))
            }
            _ => Ok(None),
        }
    }
}
