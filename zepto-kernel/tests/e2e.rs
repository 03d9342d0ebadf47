//! End to end: a client and a device exchange encrypted, reliable commands over an
//! in-memory link that drops, duplicates, reorders, corrupts and replays packets.

use zepto_kernel::client::{Client, ClientConfig, ClientEvent};
use zepto_kernel::heap::{Handle, Heap, Parser};
use zepto_kernel::nonce_store::{key_id, BlankStart, KeyId, NonceStore};
use zepto_kernel::plugins::{Bodypart, Ping, Plugin, PluginFault, PluginStep};
use zepto_kernel::pump::{self, Device, DeviceConfig, Event};
use zepto_kernel::saccp::client::{self as saccp_client, Fragment, Reply};
use zepto_kernel::saccp::{ErrorCode, ExtraHeaders};
use zepto_kernel::sagdp;
use zepto_kernel::sasp::{self, DefaultCipher, Role, Sasp};
use zepto_kernel::testhal::TestHal;
use zepto_kernel::vm::insn::{Instruction, ReplyFlags};
use zepto_kernel::vm::reply;
use zepto_kernel::vm::{VmConfig, VmHal, VmMedium};
use zepto_kernel::HeapMem;

const KEY: [u8; 16] = *b"zepto-test-key!!";
const COUNTER_ID: i16 = 5;

fn kid(key: &[u8; 16]) -> KeyId {
    key_id::<DefaultCipher>(key).unwrap()
}

/// A client whose records must have been provisioned (at `base`).
fn client_cfg(base: usize, reserve: u32) -> ClientConfig {
    ClientConfig {
        nonce_base: base,
        nonce_reserve: reserve,
        blank: BlankStart::Refuse,
        ..ClientConfig::default()
    }
}

/// Counts its executions and replies with the count (u16 LE): "exactly once" shows
/// in the replies.
#[derive(Default)]
struct Counter {
    n: u16,
}

impl Plugin for Counter {
    fn handle(
        &mut self,
        _command: &mut Parser,
        heap: &mut Heap<'_>,
        reply: Handle,
        _hal: &mut dyn VmHal,
    ) -> Result<PluginStep, PluginFault> {
        self.n += 1;
        heap.append_reply_u16(reply, self.n)?;
        Ok(PluginStep::Done)
    }
}

type Vm = VmMedium<8, 16, 2>;
type Dev<'t, 'p> = Device<'t, 'p, Vm, DefaultCipher, 1024, 8>;

fn program(insns: &[Instruction<'_>]) -> Vec<u8> {
    let mut out = Vec::new();
    for i in insns {
        let mut buf = [0u8; 64];
        let n = i.encode(&mut buf).unwrap();
        out.extend_from_slice(&buf[..n]);
    }
    out
}

fn counter_program() -> Vec<u8> {
    program(&[Instruction::Exec {
        bodypart: COUNTER_ID,
        data: &[],
    }])
}

fn fresh_hals(reserve_seed: u64) -> (TestHal<256>, TestHal<256>) {
    let mut d = TestHal::<256>::new(reserve_seed);
    let mut c = TestHal::<256>::new(reserve_seed + 1);
    pump::provision_new_key::<DefaultCipher, _>(&mut d, &DeviceConfig::default(), &KEY).unwrap();
    NonceStore::provision(&mut c, 0, kid(&KEY), 0, 0).unwrap();
    (d, c)
}

/// Deterministic xorshift for the link.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

/// One direction of a faulty link.
struct Link {
    rng: Rng,
    loss: u64,
    dup: u64,
    corrupt: u64,
    reorder: u64,
    replay: u64,
    queue: Vec<Vec<u8>>,
    history: Vec<Vec<u8>>,
}

impl Link {
    fn new(seed: u64, loss: u64) -> Self {
        Self {
            rng: Rng(seed | 1),
            loss,
            dup: 10,
            corrupt: 5,
            reorder: 10,
            replay: 5,
            queue: Vec::new(),
            history: Vec::new(),
        }
    }

    fn offer(&mut self, p: &[u8]) {
        self.history.push(p.to_vec());
        if self.rng.chance(self.loss) {
            return;
        }
        let mut p = p.to_vec();
        if self.rng.chance(self.corrupt) {
            let i = (self.rng.next() as usize) % p.len();
            p[i] ^= 1 << (self.rng.next() % 8);
        }
        if self.rng.chance(self.dup) {
            self.queue.push(p.clone());
        }
        if self.rng.chance(self.reorder) && !self.queue.is_empty() {
            self.queue.insert(0, p);
        } else {
            self.queue.push(p);
        }
        if self.rng.chance(self.replay) {
            let i = (self.rng.next() as usize) % self.history.len();
            let old = self.history[i].clone();
            self.queue.push(old);
        }
    }

    fn take(&mut self) -> Vec<Vec<u8>> {
        std::mem::take(&mut self.queue)
    }
}

struct Bench<'t, 'p> {
    dev: Dev<'t, 'p>,
    dhal: TestHal<256>,
    client: Client<DefaultCipher, 1024, 4>,
    chal: TestHal<256>,
    to_dev: Link,
    to_client: Link,
}

impl Bench<'_, '_> {
    /// Sends `prog` and pumps both ends until the reply arrives; returns the SACCP
    /// reply bytes.
    fn command(&mut self, prog: &[u8]) -> Vec<u8> {
        let pkt = self
            .client
            .send_program(&mut self.chal, prog)
            .unwrap()
            .to_vec();
        self.to_dev.offer(&pkt);
        for _ in 0..2000 {
            for p in self.to_dev.take() {
                self.dhal.push_rx(&p).unwrap();
            }
            while !self.dhal.rx.is_empty() {
                self.dev.poll(&mut self.dhal);
            }
            self.dev.poll(&mut self.dhal);
            while let Some(p) = self.dhal.pop_tx() {
                self.to_client.offer(&p);
            }
            for p in self.to_client.take() {
                match self.client.receive(&mut self.chal, &p).unwrap() {
                    ClientEvent::Reply => return self.client.reply().to_vec(),
                    ClientEvent::Send => {
                        let out = self.client.outgoing().to_vec();
                        self.to_dev.offer(&out);
                    }
                    ClientEvent::Resync => {
                        let out = self.client.outgoing().to_vec();
                        self.to_dev.offer(&out);
                        if let Some(p) = self.client.resend_now(&mut self.chal).unwrap() {
                            let p = p.to_vec();
                            self.to_dev.offer(&p);
                        }
                    }
                    ClientEvent::Nothing => {}
                }
            }
            self.dhal.now_ms += 50;
            self.chal.now_ms += 50;
            if let Some(p) = self.client.poll(&mut self.chal).unwrap() {
                let p = p.to_vec();
                self.to_dev.offer(&p);
            }
        }
        panic!("no reply");
    }
}

fn ok_body(reply: &[u8]) -> Vec<u8> {
    match saccp_client::decode_reply(reply).unwrap() {
        Reply::Ok { data, .. } => {
            let frames: Vec<_> = reply::frames(data).collect::<Result<_, _>>().unwrap();
            frames.iter().flat_map(|f| f.body.to_vec()).collect()
        }
        other => panic!("not OK: {other:?}"),
    }
}

fn run_lossy(seed: u64, loss: u64, commands: u16) -> (u16, u32) {
    let (mut dhal, mut chal) = fresh_hals(seed);
    let mut counter = Counter::default();
    let mut ping = Ping;
    let mut table = [
        Bodypart::new(COUNTER_ID, &mut counter),
        Bodypart::new(1, &mut ping),
    ];
    let dev = Dev::new(
        &KEY,
        Vm::new(VmConfig::default()),
        &mut table,
        DeviceConfig::default(),
        &mut dhal,
    )
    .unwrap();
    let timing = sagdp::Config {
        max_resends: Some(40),
        ..sagdp::Config::MASTER
    };
    let client = Client::new(
        &KEY,
        &mut chal,
        ClientConfig {
            timing,
            ..client_cfg(0, 256)
        },
    )
    .unwrap();
    let mut b = Bench {
        dev,
        dhal,
        client,
        chal,
        to_dev: Link::new(seed * 3 + 1, loss),
        to_client: Link::new(seed * 7 + 5, loss),
    };
    for i in 1..=commands {
        let r = b.command(&counter_program());
        // The reply carries the execution count: exactly one execution per command.
        assert_eq!(ok_body(&r), i.to_le_bytes(), "command {i}, seed {seed}");
    }
    let auth_failures = b.dev.sasp_stats().auth_failures;
    drop(b);
    (counter.n, auth_failures)
}

#[test]
fn clean_link_round_trip() {
    let (n, _) = run_lossy(1, 0, 5);
    assert_eq!(n, 5);
}

#[test]
fn thirty_percent_loss_with_duplicates_reordering_corruption_and_replays() {
    let mut forged = 0;
    for seed in 1..=6 {
        let (n, f) = run_lossy(seed, 30, 25);
        assert_eq!(n, 25, "seed {seed}: each command ran exactly once");
        forged += f;
    }
    // Corrupted packets were seen and rejected by authentication.
    assert!(forged > 0);
}

fn device_and_client<'t, 'p>(
    table: &'t mut [Bodypart<'p>],
) -> (
    Dev<'t, 'p>,
    TestHal<256>,
    Client<DefaultCipher, 1024, 4>,
    TestHal<256>,
) {
    let (mut dhal, mut chal) = fresh_hals(9);
    let dev = Dev::new(
        &KEY,
        Vm::new(VmConfig::default()),
        table,
        DeviceConfig::default(),
        &mut dhal,
    )
    .unwrap();
    let client = Client::new(&KEY, &mut chal, client_cfg(0, 256)).unwrap();
    (dev, dhal, client, chal)
}

/// Delivers the client's packet and returns the client's view of the device's answer.
fn exchange(
    dev: &mut Dev<'_, '_>,
    dhal: &mut TestHal<256>,
    client: &mut Client<DefaultCipher, 1024, 4>,
    chal: &mut TestHal<256>,
    packet: &[u8],
) -> Vec<ClientEvent> {
    dhal.push_rx(packet).unwrap();
    dev.poll(dhal);
    let mut events = Vec::new();
    while let Some(p) = dhal.pop_tx() {
        events.push(client.receive(chal, &p).unwrap());
    }
    events
}

#[test]
fn all_three_program_forms() {
    let mut counter = Counter::default();
    let mut table = [Bodypart::new(COUNTER_ID, &mut counter)];
    let (mut dev, mut dhal, mut client, mut chal) = device_and_client(&mut table);
    let prog = counter_program();
    let p = client.send_program(&mut chal, &prog).unwrap().to_vec();
    assert_eq!(
        exchange(&mut dev, &mut dhal, &mut client, &mut chal, &p),
        [ClientEvent::Reply]
    );
    assert_eq!(ok_body(client.reply()), 1u16.to_le_bytes());

    // REPEAT_OLD_PROGRAM with an 8-byte checksum.
    let p = client
        .send_command(&mut chal, |heap, h| {
            saccp_client::build_repeat_old_program(heap, h, &ExtraHeaders::default(), &prog, 8)
        })
        .unwrap()
        .to_vec();
    exchange(&mut dev, &mut dhal, &mut client, &mut chal, &p);
    assert_eq!(ok_body(client.reply()), 2u16.to_le_bytes());

    // REUSE_OLD_PROGRAM: old EXEC, then a verbatim PUSHREPLY.
    let push = program(&[Instruction::PushReply { data: &[0xab] }]);
    let frags = [
        Fragment::Reference {
            offset: 0,
            len: prog.len() as u16,
        },
        Fragment::Verbatim(&push),
    ];
    let p = client
        .send_command(&mut chal, |heap, h| {
            saccp_client::build_reuse_old_program(
                heap,
                h,
                &ExtraHeaders::default(),
                &prog,
                16,
                &frags,
            )
        })
        .unwrap()
        .to_vec();
    exchange(&mut dev, &mut dhal, &mut client, &mut chal, &p);
    assert_eq!(ok_body(client.reply()), [3, 0, 0xab]);

    // A wrong checksum is an SACCP error, and executes nothing.
    let p = client
        .send_command(&mut chal, |heap, h| {
            saccp_client::build_repeat_old_program(heap, h, &ExtraHeaders::default(), b"other", 8)
        })
        .unwrap()
        .to_vec();
    exchange(&mut dev, &mut dhal, &mut client, &mut chal, &p);
    assert_eq!(
        client.decoded_reply().unwrap(),
        Reply::Error(ErrorCode::OLD_PROGRAM_CHECKSUM_DOESNT_MATCH)
    );
    assert_eq!(counter.n, 3);
}

#[test]
fn vm_exception_reaches_the_client() {
    let mut table: [Bodypart<'_>; 0] = [];
    let (mut dev, mut dhal, mut client, mut chal) = device_and_client(&mut table);
    // EXEC on a body part that does not exist.
    let prog = program(&[Instruction::Exec {
        bodypart: 9,
        data: &[],
    }]);
    let p = client.send_program(&mut chal, &prog).unwrap().to_vec();
    exchange(&mut dev, &mut dhal, &mut client, &mut chal, &p);
    match client.decoded_reply().unwrap() {
        Reply::Exception { data, .. } => {
            let e = reply::decode_exception(data).unwrap();
            assert_eq!(e.position, 0);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(dev.stats().vm_exceptions, 1);
}

#[test]
fn sleeping_program_is_overridden_and_packets_are_handled_while_waiting() {
    let mut ping = Ping;
    let mut table = [Bodypart::new(1, &mut ping)];
    let (mut dev, mut dhal, mut client, mut chal) = device_and_client(&mut table);
    let slow = program(&[
        Instruction::Sleep { ms: 10_000 },
        Instruction::PushReply { data: &[0x11] },
    ]);
    let p = client.send_program(&mut chal, &slow).unwrap().to_vec();
    assert!(exchange(&mut dev, &mut dhal, &mut client, &mut chal, &p).is_empty());
    assert!(dev.vm_waiting());
    // The device asks to be woken when the sleep ends.
    let w = dev.poll(&mut dhal);
    assert_eq!(w.timeout_ms, Some(10_000));
    // The client gives up on the slow command (fast retries) and sends a new one:
    // the device aborts the sleeping program and runs the new one.
    let quick = program(&[Instruction::Exec {
        bodypart: 1,
        data: &[],
    }]);
    let mut client2 = Client::<DefaultCipher, 1024, 4>::new(&KEY, &mut chal, client_cfg(64, 256));
    assert!(
        client2.is_err(),
        "second client needs its own provisioned nonces"
    );
    NonceStore::provision(&mut chal, 64, kid(&KEY), 1 << 20, 0).unwrap();
    client2 = Client::new(&KEY, &mut chal, client_cfg(64, 256));
    let mut client2 = client2.unwrap();
    let p = client2.send_program(&mut chal, &quick).unwrap().to_vec();
    let ev = exchange(&mut dev, &mut dhal, &mut client2, &mut chal, &p);
    assert_eq!(ev, [ClientEvent::Reply]);
    assert_eq!(ok_body(client2.reply()), [0x01]);
    assert!(!dev.vm_waiting());
    // The aborted program never answers, even after its sleep would have ended.
    dhal.now_ms += 20_000;
    dev.poll(&mut dhal);
    assert!(dhal.tx.is_empty());
}

#[test]
fn sleep_then_reply() {
    let mut table: [Bodypart<'_>; 0] = [];
    let (mut dev, mut dhal, mut client, mut chal) = device_and_client(&mut table);
    let prog = program(&[
        Instruction::Sleep { ms: 300 },
        Instruction::PushReply { data: &[0x42] },
        Instruction::Exit {
            flags: ReplyFlags::IsLast,
            padding_to: None,
        },
    ]);
    let p = client.send_program(&mut chal, &prog).unwrap().to_vec();
    assert!(exchange(&mut dev, &mut dhal, &mut client, &mut chal, &p).is_empty());
    dhal.now_ms += 299;
    dev.poll(&mut dhal);
    assert!(dhal.tx.is_empty());
    dhal.now_ms += 1;
    dev.poll(&mut dhal);
    assert!(dev.events().contains(&Event::VmDone(None)));
    let p = dhal.pop_tx().unwrap();
    assert_eq!(client.receive(&mut chal, &p).unwrap(), ClientEvent::Reply);
    assert_eq!(ok_body(client.reply()), [0x42]);
}

/// Encrypts a hand-made SAGDP packet with a rogue client end (same key, its own
/// nonces starting at `nfs`).
fn forged_sagdp_packet(nfs: u64, sagdp_packet: &[u8]) -> Vec<u8> {
    let mut hal = TestHal::<64>::new(77);
    NonceStore::provision(&mut hal, 0, kid(&KEY), nfs, 0).unwrap();
    let nonces = NonceStore::open(&mut hal, 0, 16, kid(&KEY), BlankStart::Refuse).unwrap();
    let mut s = Sasp::<DefaultCipher>::new(&KEY, Role::Client, nonces).unwrap();
    let mut heap_mem = HeapMem::<256, 2>::new();
    let mut heap = heap_mem.heap();
    let h = heap.alloc().unwrap();
    heap.set_request(h, sagdp_packet).unwrap();
    s.send(&mut heap, h, &mut hal).unwrap();
    heap.reply(h).unwrap().to_vec()
}

#[test]
fn device_recovers_from_reinitialisation_and_resyncs_nonces() {
    let mut counter = Counter::default();
    let mut table = [Bodypart::new(COUNTER_ID, &mut counter)];
    let (mut dev, mut dhal, mut client, mut chal) = device_and_client(&mut table);
    let prog = counter_program();
    let p = client.send_program(&mut chal, &prog).unwrap().to_vec();
    exchange(&mut dev, &mut dhal, &mut client, &mut chal, &p);
    // An intermediate packet answering a packet the device never sent: the chain is
    // broken, the device sends an Error Message and re-initialises.
    let bogus = forged_sagdp_packet(1_000_000, &[0x00, 1, 2, 3, 4, 5, 6, 0x20]);
    dhal.push_rx(&bogus).unwrap();
    dev.poll(&mut dhal);
    assert_eq!(dev.stats().reinits, 1);
    assert!(dev.events().contains(&Event::Reinit));
    // The pump, SAGDP and SACCP hold four distinct blocks again.
    assert_eq!(dev.heap().handles_in_use(), 4);
    let err_msg = dhal.pop_tx().expect("error message sent");
    assert!(err_msg.len() >= sasp::MIN_PACKET_LEN);
    // The client's nonces are now below the device's NLW: its next command gets an
    // "old nonce" answer, resynchronises and goes through on the resend.
    let p = client.send_program(&mut chal, &prog).unwrap().to_vec();
    dhal.push_rx(&p).unwrap();
    dev.poll(&mut dhal);
    let old_nonce = dhal.pop_tx().unwrap();
    // The command goes again at once, under a nonce above the device's NLW.
    assert_eq!(
        client.receive(&mut chal, &old_nonce).unwrap(),
        ClientEvent::Send
    );
    assert_eq!(client.sasp_stats().resyncs, 1);
    let resend = client.outgoing().to_vec();
    let ev = exchange(&mut dev, &mut dhal, &mut client, &mut chal, &resend);
    assert_eq!(ev, [ClientEvent::Reply]);
    assert_eq!(ok_body(client.reply()), 2u16.to_le_bytes());
}

#[test]
fn wrong_key_is_rejected_without_state_change() {
    let mut ping = Ping;
    let mut table = [Bodypart::new(1, &mut ping)];
    let (mut dev, mut dhal, _client, _chal) = device_and_client(&mut table);
    let mut other = TestHal::<256>::new(3);
    NonceStore::provision(&mut other, 0, kid(&[0x55; 16]), 0, 0).unwrap();
    let mut intruder =
        Client::<DefaultCipher, 1024, 4>::new(&[0x55; 16], &mut other, client_cfg(0, 256)).unwrap();
    let prog = program(&[Instruction::Exec {
        bodypart: 1,
        data: &[],
    }]);
    let p = intruder.send_program(&mut other, &prog).unwrap().to_vec();
    let writes = dhal.storage_writes;
    dhal.push_rx(&p).unwrap();
    dev.poll(&mut dhal);
    assert!(dhal.tx.is_empty());
    assert_eq!(dev.sasp_stats().auth_failures, 1);
    assert_eq!(dev.stats().programs, 0);
    assert_eq!(dhal.storage_writes, writes);
}

/// `Device::nonces` moves with an authenticated exchange and only then (a forged
/// packet leaves it alone), and a checkpoint after it writes once: what a port needs
/// to checkpoint only when the nonce state moved.
#[test]
fn nonce_state_moves_only_with_authenticated_traffic() {
    let mut ping = Ping;
    let mut table = [Bodypart::new(1, &mut ping)];
    let (mut dev, mut dhal, mut client, mut chal) = device_and_client(&mut table);
    let state = |d: &Dev<'_, '_>| (d.nonces().nfs(), d.nonces().nlw());
    let start = state(&dev);
    dhal.push_rx(&[0x5a; 40]).unwrap();
    dev.poll(&mut dhal);
    assert!(dhal.tx.is_empty());
    assert_eq!(state(&dev), start);

    let prog = program(&[Instruction::Exec {
        bodypart: 1,
        data: &[],
    }]);
    let p = client.send_program(&mut chal, &prog).unwrap().to_vec();
    let events = exchange(&mut dev, &mut dhal, &mut client, &mut chal, &p);
    assert_eq!(events, vec![ClientEvent::Reply]);
    let moved = state(&dev);
    assert!(
        moved.0 > start.0 && moved.1 > start.1,
        "{moved:?} vs {start:?}"
    );

    let writes = dhal.storage_writes;
    dev.checkpoint(&mut dhal).unwrap();
    assert!(dhal.storage_writes > writes);
    let writes = dhal.storage_writes;
    dev.checkpoint(&mut dhal).unwrap();
    assert_eq!(
        dhal.storage_writes, writes,
        "nothing moved, nothing written"
    );
    assert_eq!(state(&dev), moved);
}

/// Power fails at every storage write in turn; after each reboot the device goes on.
/// No nonce is ever sent twice.
#[test]
fn power_cut_at_every_storage_write_never_reuses_a_nonce() {
    let cfg = DeviceConfig {
        nonce_reserve: 2,
        ..DeviceConfig::default()
    };
    // Count the writes of an uninterrupted run first.
    // Returns the nonces the device sent and the storage writes it made.
    let run = |cut_at: Option<u32>| -> (Vec<u64>, u32) {
        let mut dhal = TestHal::<256>::new(5);
        let mut chal = TestHal::<256>::new(6);
        pump::provision_new_key::<DefaultCipher, _>(&mut dhal, &cfg, &KEY).unwrap();
        let provisioned = dhal.storage_writes;
        NonceStore::provision(&mut chal, 0, kid(&KEY), 0, 0).unwrap();
        let mut client =
            Client::<DefaultCipher, 1024, 4>::new(&KEY, &mut chal, client_cfg(0, 4)).unwrap();
        let mut sent = Vec::new();
        dhal.power_cut_after = cut_at;
        let mut ping = Ping;
        let prog = program(&[Instruction::Exec {
            bodypart: 1,
            data: &[],
        }]);
        let mut rebooted = false;
        for _ in 0..12 {
            let mut table = [Bodypart::new(1, &mut ping)];
            let mut dev = Dev::new(
                &KEY,
                Vm::new(VmConfig::default()),
                &mut table,
                cfg,
                &mut dhal,
            )
            .unwrap();
            let mut done = 0;
            while done < 4 {
                if !client.busy() {
                    let p = client.send_program(&mut chal, &prog).unwrap().to_vec();
                    dhal.push_rx(&p).unwrap();
                } else {
                    chal.now_ms += 5000;
                    if let Some(p) = client.poll(&mut chal).ok().flatten() {
                        let p = p.to_vec();
                        dhal.push_rx(&p).unwrap();
                    }
                }
                dev.poll(&mut dhal);
                while let Some(p) = dhal.pop_tx() {
                    let hdr: [u8; 6] = p[..6].try_into().unwrap();
                    sent.push(sasp::parse_header(&hdr).0);
                    let _ = client.receive(&mut chal, &p);
                }
                if dhal.powered_off {
                    break;
                }
                done += 1;
            }
            if dhal.powered_off && !rebooted {
                dhal = dhal.rebooted();
                rebooted = true;
                continue;
            }
            if !dhal.powered_off {
                break;
            }
        }
        (sent, dhal.storage_writes - provisioned)
    };
    let (base, writes) = run(None);
    assert!(base.len() >= 4);
    assert!(
        writes >= 8,
        "the scenario must write storage several times ({writes})"
    );
    for k in 0..=writes {
        let (sent, _) = run(Some(k));
        let mut sorted = sent.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(
            sorted.len(),
            sent.len(),
            "cut after {k} writes: nonce reused: {sent:?}"
        );
    }
}

/// A byte link that frames and unframes SADLP inside the device's heap blocks
/// (`PacketBus::rx_room` / `tx_room` / `send_in_place`): the same commands and
/// replies, and the frames on the wire are the ones `sadlp::encode` writes.
#[test]
fn sadlp_framed_in_the_heap() {
    let mut counter = Counter::default();
    let mut table = [Bodypart::new(COUNTER_ID, &mut counter)];
    let (mut dev, mut dhal, mut client, mut chal) = device_and_client(&mut table);
    dhal.sadlp_in_place = true;
    let prog = counter_program();
    for round in 1..=3u16 {
        let p = client.send_program(&mut chal, &prog).unwrap().to_vec();
        dhal.push_rx(&p).unwrap();
        dev.poll(&mut dhal);
        let frame = dhal.pop_tx().expect("a framed reply");
        assert!(dhal.pop_tx().is_none());
        let mut d = zepto_kernel::sadlp::Decoder::<300>::new();
        let (used, packet) = d.feed(&frame);
        let packet = packet.expect("one valid frame").to_vec();
        assert_eq!(used, frame.len());
        let mut again = vec![0u8; zepto_kernel::sadlp::encoded_len(packet.len())];
        let n = zepto_kernel::sadlp::encode(&packet, &mut again).unwrap();
        assert_eq!(&again[..n], frame.as_slice());
        assert_eq!(client.receive(&mut chal, &packet), Ok(ClientEvent::Reply));
        assert_eq!(ok_body(client.reply()), round.to_le_bytes());
    }
    assert_eq!(dev.stats().errors, 0);
    // A corrupted frame is dropped by its CRC, in the heap, without a reply.
    let p = client.send_program(&mut chal, &prog).unwrap().to_vec();
    dhal.push_rx(&p).unwrap();
    let last = dhal.rx.back_mut().unwrap();
    last[3] ^= 0x40;
    dev.poll(&mut dhal);
    assert!(dhal.pop_tx().is_none());
    assert_eq!(dev.stats().errors, 1);
}

fn push_reply(data: &[u8]) -> Vec<u8> {
    program(&[Instruction::PushReply { data }])
}

/// Sends `packet` to the device and follows the exchange (resyncs, resends) until
/// the client has its reply.
fn until_reply(
    dev: &mut Dev<'_, '_>,
    dhal: &mut TestHal<256>,
    client: &mut Client<DefaultCipher, 1024, 4>,
    chal: &mut TestHal<256>,
    packet: &[u8],
) -> Vec<u8> {
    let mut next = vec![packet.to_vec()];
    for _ in 0..10 {
        let mut out = Vec::new();
        for p in next.drain(..) {
            for ev in exchange(dev, dhal, client, chal, &p) {
                match ev {
                    ClientEvent::Reply => return client.reply().to_vec(),
                    ClientEvent::Send => out.push(client.outgoing().to_vec()),
                    ClientEvent::Resync => {
                        out.push(client.outgoing().to_vec());
                        if let Some(p) = client.resend_now(chal).unwrap() {
                            out.push(p.to_vec());
                        }
                    }
                    ClientEvent::Nothing => {}
                }
            }
        }
        next = out;
    }
    panic!("no reply");
}

/// A client that lost its nonce state and starts again from the same values (a
/// floor that failed) reuses the previous client's nonces and chain ID; the device
/// must run its command and answer it, never with the previous command's reply.
#[test]
fn a_client_that_lost_its_state_gets_its_own_reply() {
    let mut table: [Bodypart<'_>; 0] = [];
    let (mut dev, mut dhal, mut client, mut chal) = device_and_client(&mut table);
    let p = client
        .send_program(&mut chal, &push_reply(&[0xaa]))
        .unwrap()
        .to_vec();
    let r = until_reply(&mut dev, &mut dhal, &mut client, &mut chal, &p);
    assert_eq!(ok_body(&r), [0xaa]);
    // The same storage as before the first command: the same first nonce.
    let mut chal2 = TestHal::<256>::new(10);
    NonceStore::provision(&mut chal2, 0, kid(&KEY), 0, 0).unwrap();
    let mut again = Client::new(&KEY, &mut chal2, client_cfg(0, 256)).unwrap();
    let p2 = again
        .send_program(&mut chal2, &push_reply(&[0xbb]))
        .unwrap()
        .to_vec();
    assert_eq!(p2[..6], p[..6], "the lost state made the nonce repeat");
    let r = until_reply(&mut dev, &mut dhal, &mut again, &mut chal2, &p2);
    assert_eq!(ok_body(&r), [0xbb], "the reply answers its own command");
    assert_eq!(dev.stats().programs, 2);
}

/// A device built with `unkeyed` takes no packet and sends none; `start` makes it
/// the device `new` would have made, in place: the packet that waited is answered.
#[test]
fn an_unkeyed_device_waits_for_start() {
    let mut table: [Bodypart<'_>; 0] = [];
    let (mut dhal, mut chal) = fresh_hals(9);
    let mut dev = Dev::unkeyed(
        Vm::new(VmConfig::default()),
        &mut table,
        DeviceConfig::default(),
    );
    let mut client: Client<DefaultCipher, 1024, 4> =
        Client::new(&KEY, &mut chal, client_cfg(0, 256)).unwrap();
    let p = client
        .send_program(&mut chal, &push_reply(&[0xcc]))
        .unwrap()
        .to_vec();
    dhal.push_rx(&p).unwrap();
    for _ in 0..3 {
        dev.poll(&mut dhal);
    }
    assert_eq!(dhal.pop_tx(), None, "an unkeyed device sends nothing");
    assert_eq!(dev.stats().packets_in, 0);
    assert_eq!(dev.stats().packets_out, 0);
    dev.start(&KEY, &mut dhal).unwrap();
    assert!(
        !dev.nonces().started_blank(),
        "the provisioned records were found"
    );
    dev.poll(&mut dhal);
    let mut got = None;
    while let Some(out) = dhal.pop_tx() {
        if client.receive(&mut chal, &out).unwrap() == ClientEvent::Reply {
            got = Some(client.reply().to_vec());
        }
    }
    assert_eq!(ok_body(&got.expect("a reply after start")), [0xcc]);
    assert_eq!(dev.stats().reinits, 0);
}

/// Sends one program from `client` to `dev` and returns everything the device sent.
fn device_answers(
    dev: &mut Dev<'_, '_>,
    dhal: &mut TestHal<256>,
    client: &mut Client<DefaultCipher, 1024, 4>,
    chal: &mut TestHal<256>,
) -> Vec<Vec<u8>> {
    let p = client
        .send_program(chal, &push_reply(&[0xcc]))
        .unwrap()
        .to_vec();
    dhal.push_rx(&p).unwrap();
    let mut sent = Vec::new();
    for _ in 0..3 {
        dev.poll(dhal);
        while let Some(out) = dhal.pop_tx() {
            sent.push(out.to_vec());
        }
        // Past every resend timer.
        dhal.now_ms += 60_000;
    }
    sent
}

/// A second `start` that fails (here: a new key whose records were never
/// provisioned, with `BlankStart::Refuse`) leaves the device without packets: it
/// must not run the new key's commands under the old key's nonce store (whose
/// records the new key's next start does not find), nor the old key's.
#[test]
fn a_failed_second_start_takes_and_sends_nothing() {
    const KEY2: [u8; 16] = *b"another-key-here";
    let mut table: [Bodypart<'_>; 0] = [];
    let (mut dhal, mut chal) = fresh_hals(21);
    let cfg = DeviceConfig {
        blank: BlankStart::Refuse,
        ..DeviceConfig::default()
    };
    let mut dev = Dev::unkeyed(Vm::new(VmConfig::default()), &mut table, cfg);
    dev.start(&KEY, &mut dhal).unwrap();
    // A command before, so that SAGDP and SASP have state.
    let mut client: Client<DefaultCipher, 1024, 4> =
        Client::new(&KEY, &mut chal, client_cfg(0, 256)).unwrap();
    let p = client
        .send_program(&mut chal, &push_reply(&[0xbb]))
        .unwrap()
        .to_vec();
    let got = until_reply(&mut dev, &mut dhal, &mut client, &mut chal, &p);
    assert_eq!(ok_body(&got), [0xbb]);
    assert_eq!(
        dev.start(&KEY2, &mut dhal),
        Err(zepto_kernel::Error::NotProvisioned)
    );
    let mut chal2 = TestHal::<256>::new(23);
    NonceStore::provision(&mut chal2, 0, kid(&KEY2), 0, 0).unwrap();
    let mut client2: Client<DefaultCipher, 1024, 4> =
        Client::new(&KEY2, &mut chal2, client_cfg(0, 256)).unwrap();
    let sent = device_answers(&mut dev, &mut dhal, &mut client2, &mut chal2);
    assert_eq!(sent, Vec::<Vec<u8>>::new(), "nothing under the new key");
    let sent = device_answers(&mut dev, &mut dhal, &mut client, &mut chal);
    assert_eq!(sent, Vec::<Vec<u8>>::new(), "nothing under the old key");
    assert_eq!(dev.stats().programs, 1, "only the command before");
    // A start that succeeds brings it back.
    dev.start(&KEY, &mut dhal).unwrap();
    let mut client: Client<DefaultCipher, 1024, 4> =
        Client::new(&KEY, &mut chal, client_cfg(0, 256)).unwrap();
    let p = client
        .send_program(&mut chal, &push_reply(&[0xdd]))
        .unwrap()
        .to_vec();
    let got = until_reply(&mut dev, &mut dhal, &mut client, &mut chal, &p);
    assert_eq!(ok_body(&got), [0xdd]);
}

/// A plugin whose initialisation fails from its second call on.
#[derive(Default)]
struct FailsSecondInit {
    inits: u32,
}

impl Plugin for FailsSecondInit {
    fn init(&mut self, _hal: &mut dyn VmHal) -> Result<(), zepto_kernel::Error> {
        self.inits += 1;
        if self.inits > 1 {
            return Err(zepto_kernel::Error::Unsupported);
        }
        Ok(())
    }

    fn handle(
        &mut self,
        _command: &mut Parser,
        _heap: &mut Heap<'_>,
        _reply: Handle,
        _hal: &mut dyn VmHal,
    ) -> Result<PluginStep, PluginFault> {
        Ok(PluginStep::Done)
    }
}

/// A second `start` whose plugins fail to initialise leaves the device without
/// packets too (the first start's heap blocks and layers must not keep it going).
#[test]
fn a_second_start_with_failing_plugins_takes_and_sends_nothing() {
    let mut plugin = FailsSecondInit::default();
    let mut table = [Bodypart::new(7, &mut plugin)];
    let (mut dhal, mut chal) = fresh_hals(25);
    let mut dev = Dev::unkeyed(
        Vm::new(VmConfig::default()),
        &mut table,
        DeviceConfig::default(),
    );
    dev.start(&KEY, &mut dhal).unwrap();
    assert_eq!(
        dev.start(&KEY, &mut dhal),
        Err(zepto_kernel::Error::Unsupported)
    );
    let mut client: Client<DefaultCipher, 1024, 4> =
        Client::new(&KEY, &mut chal, client_cfg(0, 256)).unwrap();
    let sent = device_answers(&mut dev, &mut dhal, &mut client, &mut chal);
    assert_eq!(sent, Vec::<Vec<u8>>::new());
    assert_eq!(dev.stats().programs, 0);
}

/// Only an authentic packet with a fresh nonce names the peer; garbage changes
/// nothing and a replay gets its "old nonce" answer sent back to where it came from.
#[test]
fn garbage_and_replays_never_become_the_peer() {
    let mut ping = Ping;
    let mut table = [Bodypart::new(1, &mut ping)];
    let (mut dev, mut dhal, mut client, mut chal) = device_and_client(&mut table);
    dhal.push_rx(&[0x42; 60]).unwrap();
    dev.poll(&mut dhal);
    assert_eq!((dhal.sources_accepted, dhal.replies_to_source), (0, 0));
    assert!(dhal.tx.is_empty());
    let p = client
        .send_program(&mut chal, &push_reply(&[1]))
        .unwrap()
        .to_vec();
    assert_eq!(
        exchange(&mut dev, &mut dhal, &mut client, &mut chal, &p),
        [ClientEvent::Reply]
    );
    assert_eq!((dhal.sources_accepted, dhal.replies_to_source), (1, 0));
    dhal.push_rx(&p).unwrap();
    dev.poll(&mut dhal);
    assert_eq!((dhal.sources_accepted, dhal.replies_to_source), (1, 1));
    assert_eq!(dev.stats().programs, 1);
}

/// A device with its key but blank records (first boot, or wiped) starts both
/// counters at a random high value: it never repeats a nonce it sent before the
/// wipe, and packets recorded before the wipe are refused as old.
#[test]
fn a_wiped_device_starts_high_and_refuses_old_packets() {
    let mut counter = Counter::default();
    let mut table = [Bodypart::new(COUNTER_ID, &mut counter)];
    let (mut dev, mut dhal, mut client, mut chal) = device_and_client(&mut table);
    let mut recorded = Vec::new();
    for i in 1..=3u16 {
        let p = client
            .send_program(&mut chal, &counter_program())
            .unwrap()
            .to_vec();
        let r = until_reply(&mut dev, &mut dhal, &mut client, &mut chal, &p);
        assert_eq!(ok_body(&r), i.to_le_bytes());
        recorded.push(p);
    }
    // Wiped: the storage is erased, the key stays.
    dhal.storage = [0xff; 256];
    let mut table = [Bodypart::new(COUNTER_ID, &mut counter)];
    let mut dev = Dev::new(
        &KEY,
        Vm::new(VmConfig::default()),
        &mut table,
        DeviceConfig::default(),
        &mut dhal,
    )
    .unwrap();
    assert!(dev.nonces().started_blank());
    assert!(dev.nonces().nlw() >= zepto_kernel::nonce_store::RANDOM_START);
    for p in &recorded {
        dhal.push_rx(p).unwrap();
        dev.poll(&mut dhal);
        let answer = dhal.pop_tx().expect("old nonce answer");
        let hdr: [u8; 6] = answer[..6].try_into().unwrap();
        let (vp, to_sasp) = sasp::parse_header(&hdr);
        assert!(to_sasp && vp > zepto_kernel::nonce_store::RANDOM_START);
    }
    assert_eq!(dev.stats().programs, 0, "no recorded command ran again");
    // The real client resynchronises and goes on.
    let p = client
        .send_program(&mut chal, &counter_program())
        .unwrap()
        .to_vec();
    let r = until_reply(&mut dev, &mut dhal, &mut client, &mut chal, &p);
    assert_eq!(ok_body(&r), 4u16.to_le_bytes());
}

/// Two clients on one nonce storage (two processes on one state file): when one
/// reserved the range the other's next nonce would have come from, the other sends
/// above it. Its packet must carry that nonce as its SAGDP ID too: an ID taken from
/// the other client's range makes the device take the packet for the other
/// client's command (same bytes: its reply is sent again) and the client refuse its
/// own reply (the reply names the real nonce).
#[test]
fn two_clients_on_one_storage_each_get_their_own_reply_at_once() {
    let mut counter = Counter::default();
    let mut table = [Bodypart::new(COUNTER_ID, &mut counter)];
    let (mut dev, mut dhal, mut a, mut chal) = device_and_client(&mut table);
    let mut b = Client::<DefaultCipher, 1024, 4>::new(&KEY, &mut chal, client_cfg(0, 256)).unwrap();
    let pb = b
        .send_program(&mut chal, &counter_program())
        .unwrap()
        .to_vec();
    let pa = a
        .send_program(&mut chal, &counter_program())
        .unwrap()
        .to_vec();
    assert_ne!(pa[..6], pb[..6], "two packets under one nonce");
    assert_eq!(
        exchange(&mut dev, &mut dhal, &mut b, &mut chal, &pb),
        [ClientEvent::Reply]
    );
    assert_eq!(ok_body(b.reply()), 1u16.to_le_bytes());
    assert_eq!(
        exchange(&mut dev, &mut dhal, &mut a, &mut chal, &pa),
        [ClientEvent::Reply],
        "A takes its reply at once"
    );
    assert_eq!(
        ok_body(a.reply()),
        2u16.to_le_bytes(),
        "A's command ran: its reply is not B's"
    );
}

/// Replays cost the device a nonce each ("old nonce" answers go out under fresh
/// nonces), and a record write per `reserve` of them. A flood of one recorded
/// packet must not make the device burn nonces (and wear its flash) at the rate of
/// the link: each old nonce is answered once, anything else at most once per
/// `pump::OLD_NONCE_ANSWER_GAP_MS`.
#[test]
fn a_replay_flood_gets_few_answers() {
    let mut table: [Bodypart<'_>; 0] = [];
    let (mut dev, mut dhal, mut client, mut chal) = device_and_client(&mut table);
    let p = client
        .send_program(&mut chal, &push_reply(&[1]))
        .unwrap()
        .to_vec();
    let _ = until_reply(&mut dev, &mut dhal, &mut client, &mut chal, &p);
    let nfs = dev.nonces().nfs();
    // 1000 replays within one second: one answer, then one per gap.
    let mut answers = 0;
    for i in 0..1000u64 {
        dhal.now_ms = 10_000 + i;
        dhal.push_rx(&p).unwrap();
        dev.poll(&mut dhal);
        while dhal.pop_tx().is_some() {
            answers += 1;
        }
    }
    let most = 1 + 1000 / pump::OLD_NONCE_ANSWER_GAP_MS;
    assert!(
        (1..=most).contains(&answers),
        "{answers} answers to 1000 replays"
    );
    assert_eq!(dev.nonces().nfs() - nfs, answers);
    assert_eq!(dev.stats().programs, 1);
    // A client that lost its state (its nonces from 0, below every one answered)
    // is answered once the gap has passed, and resynchronises.
    dhal.now_ms += pump::OLD_NONCE_ANSWER_GAP_MS;
    let mut chal2 = TestHal::<256>::new(10);
    NonceStore::provision(&mut chal2, 0, kid(&KEY), 0, 0).unwrap();
    let mut lost = Client::new(&KEY, &mut chal2, client_cfg(0, 256)).unwrap();
    let p2 = lost
        .send_program(&mut chal2, &push_reply(&[2]))
        .unwrap()
        .to_vec();
    let r = until_reply(&mut dev, &mut dhal, &mut lost, &mut chal2, &p2);
    assert_eq!(ok_body(&r), [2]);
}

/// The client side of the same: a device packet replayed to a waiting client
/// (from a forged source address) made it answer "old nonce" and resend its
/// command every time, each under fresh nonces, and the device answer each resend
/// under a fresh nonce of its own: a flood at the client burnt nonces on both ends.
#[test]
fn a_replay_flood_at_a_client_gets_few_answers() {
    let mut table: [Bodypart<'_>; 0] = [];
    let (mut dev, mut dhal, mut client, mut chal) = device_and_client(&mut table);
    let p = client
        .send_program(&mut chal, &push_reply(&[1]))
        .unwrap()
        .to_vec();
    dhal.push_rx(&p).unwrap();
    dev.poll(&mut dhal);
    let reply = dhal.pop_tx().unwrap();
    assert_eq!(client.receive(&mut chal, &reply), Ok(ClientEvent::Reply));
    // The next command waits (the device never gets it); the old reply comes back
    // 1000 times within one second.
    client.send_program(&mut chal, &push_reply(&[2])).unwrap();
    let nfs = client.nonces().nfs();
    let mut sends = 0;
    for i in 0..1000u64 {
        chal.now_ms = 10_000 + i;
        match client.receive(&mut chal, &reply).unwrap() {
            ClientEvent::Nothing => {}
            _ => sends += 1,
        }
    }
    let most = 1 + 1000 / pump::OLD_NONCE_ANSWER_GAP_MS;
    assert!(
        (1..=most).contains(&sends),
        "{sends} answers to 1000 replays"
    );
    assert!(client.nonces().nfs() - nfs <= 2 * most);
}

/// The event log of a poll: what happened, in order, up to its size (the first
/// events kept), and nothing from an earlier poll.
#[test]
fn the_event_log_holds_this_polls_first_events() {
    fn events_of<const E: usize>() -> (Vec<Event>, Vec<Event>) {
        let mut counter = Counter::default();
        let mut table = [Bodypart::new(COUNTER_ID, &mut counter)];
        let (mut dhal, mut chal) = fresh_hals(9);
        let mut dev = Device::<'_, '_, Vm, DefaultCipher, 1024, 8, E>::new(
            &KEY,
            Vm::new(VmConfig::default()),
            &mut table,
            DeviceConfig::default(),
            &mut dhal,
        )
        .unwrap();
        let mut client =
            Client::<DefaultCipher, 1024, 4>::new(&KEY, &mut chal, client_cfg(0, 256)).unwrap();
        let p = client
            .send_program(&mut chal, &counter_program())
            .unwrap()
            .to_vec();
        dhal.push_rx(&p).unwrap();
        dev.poll(&mut dhal);
        let busy = dev.events().to_vec();
        let r = dhal.pop_tx().unwrap();
        assert_eq!(client.receive(&mut chal, &r).unwrap(), ClientEvent::Reply);
        dev.poll(&mut dhal);
        (busy, dev.events().to_vec())
    }
    let (all, idle) = events_of::<{ pump::EVENT_LOG }>();
    assert_eq!(all.first(), Some(&Event::Received(38)));
    assert!(matches!(all.last(), Some(Event::Sent(_))), "{all:?}");
    assert!(!all.contains(&Event::Reinit), "{all:?}");
    assert!(all.len() > 2 && all.len() < pump::EVENT_LOG, "{all:?}");
    assert_eq!(idle, []);
    let (two, idle) = events_of::<2>();
    assert_eq!(two, all[..2]);
    assert_eq!(idle, []);
    assert_eq!(events_of::<0>(), (vec![], vec![]));
}
