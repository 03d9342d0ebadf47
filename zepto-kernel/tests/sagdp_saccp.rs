//! SAGDP and SACCP together, driven the way the main pump drives them: one heap handle
//! per side carries the packet, each handler turns its request into its reply, and
//! `convert_reply_to_request` moves it on. The VM is a stand-in that answers with its
//! program reversed.
use zepto_kernel::saccp::client::{self, Reply};
use zepto_kernel::saccp::{ErrorCode, ExtraHeaders, Saccp, VmStatus};
use zepto_kernel::sagdp::{EitherRole, PacketId, PacketStatus, Sagdp, State};
use zepto_kernel::{Error, HandlerOutcome, Heap, HeapMem};

type H = HeapMem<1024, 6>;

struct Device {
    heap: H,
    h: zepto_kernel::Handle,
    sagdp: Sagdp,
    saccp: Saccp,
    next_id: u64,
}

impl Device {
    fn new() -> Self {
        let mut heap_mem = H::new();
        let mut heap = heap_mem.heap();
        let mut sagdp = Sagdp::slave();
        sagdp.init(&mut heap).unwrap();
        let mut saccp = Saccp::new();
        saccp.init(&mut heap).unwrap();
        let h = heap.alloc().unwrap();
        Device {
            heap: heap_mem,
            h,
            sagdp,
            saccp,
            next_id: 1 << 32,
        }
    }

    /// One received SAGDP packet in, the SAGDP packet to send back out (if any).
    fn pump(&mut self, packet: &[u8], pid: PacketId) -> Option<Vec<u8>> {
        let (heap, h) = (&mut self.heap.heap(), self.h);
        let next_id = &mut self.next_id;
        let mut ids = || {
            *next_id += 1;
            PacketId::new(*next_id)
        };
        heap.set_request(h, packet).unwrap();
        match self.sagdp.receive(heap, h, pid, 0, &mut ids).unwrap() {
            HandlerOutcome::Pass => {}
            HandlerOutcome::ReplyDown | HandlerOutcome::FatalErrorReinit => {
                return Some(heap.reply(h).unwrap().to_vec())
            }
            _ => return None,
        }
        heap.convert_reply_to_request(h).unwrap();
        let status = self.sagdp.received_status().unwrap();
        let reply_status = match self.saccp.receive(heap, h, status).unwrap() {
            HandlerOutcome::Pass => {
                let flags = self.saccp.exec_flags().unwrap();
                heap.convert_reply_to_request(h).unwrap();
                // The "VM": reply with the program reversed.
                let mut program = heap.request(h).unwrap().to_vec();
                program.reverse();
                heap.append_reply(h, &program).unwrap();
                heap.convert_reply_to_request(h).unwrap();
                let vm = if program.first() == Some(&0xEE) {
                    VmStatus::Exception { truncated: false }
                } else {
                    VmStatus::Ok { truncated: false }
                };
                assert_eq!(self.saccp.send(heap, h, vm), Ok(HandlerOutcome::Pass));
                flags.reply_status()
            }
            HandlerOutcome::ReplyDown => self.saccp.error_reply_status(),
            other => panic!("{other:?}"),
        };
        heap.convert_reply_to_request(h).unwrap();
        assert_eq!(
            self.sagdp.send(heap, h, reply_status, 0, &mut ids),
            Ok(HandlerOutcome::Pass)
        );
        Some(heap.reply(h).unwrap().to_vec())
    }
}

struct Client {
    heap: H,
    h: zepto_kernel::Handle,
    sagdp: Sagdp<EitherRole>,
    next_id: u64,
}

impl Client {
    fn new() -> Self {
        let mut heap_mem = H::new();
        let mut heap = heap_mem.heap();
        let mut sagdp = Sagdp::master();
        sagdp.init(&mut heap).unwrap();
        let h = heap.alloc().unwrap();
        Client {
            heap: heap_mem,
            h,
            sagdp,
            next_id: 0,
        }
    }

    /// Wraps a built command into a first SAGDP packet.
    fn command(
        &mut self,
        build: impl FnOnce(&mut Heap<'_>, zepto_kernel::Handle) -> Result<(), Error>,
    ) -> (Vec<u8>, PacketId) {
        let (heap, h) = (&mut self.heap.heap(), self.h);
        heap.set_request(h, &[]).unwrap();
        build(heap, h).unwrap();
        heap.convert_reply_to_request(h).unwrap();
        let next_id = &mut self.next_id;
        let mut ids = || {
            *next_id += 1;
            PacketId::new(*next_id)
        };
        self.sagdp
            .send(heap, h, PacketStatus::First, 0, &mut ids)
            .unwrap();
        (
            heap.reply(h).unwrap().to_vec(),
            self.sagdp.last_sent_pid().unwrap(),
        )
    }

    fn receive(&mut self, packet: &[u8], pid: PacketId) -> Vec<u8> {
        let (heap, h) = (&mut self.heap.heap(), self.h);
        heap.set_request(h, packet).unwrap();
        let mut ids = || Err(Error::InvalidState);
        assert_eq!(
            self.sagdp.receive(heap, h, pid, 0, &mut ids),
            Ok(HandlerOutcome::Pass)
        );
        assert_eq!(
            self.sagdp.received_status(),
            Some(PacketStatus::Terminating)
        );
        heap.reply(h).unwrap().to_vec()
    }
}

#[test]
fn commands_travel_through_both_layers() {
    let mut dev = Device::new();
    let mut cli = Client::new();
    let none = ExtraHeaders::default();
    let mut reply_pid = 1u64 << 40;
    let mut exchange =
        |cli: &mut Client,
         dev: &mut Device,
         build: &dyn Fn(&mut Heap<'_>, zepto_kernel::Handle) -> Result<(), Error>|
         -> Vec<u8> {
            let (pkt, pid) = cli.command(build);
            let back = dev.pump(&pkt, pid).unwrap();
            reply_pid += 1;
            let saccp_reply = cli.receive(&back, PacketId::new(reply_pid).unwrap());
            assert_eq!(cli.sagdp.state(), State::Idle);
            assert_eq!(dev.sagdp.state(), State::Idle);
            saccp_reply
        };

    let r = exchange(&mut cli, &mut dev, &|hp, h| {
        client::build_new_program(hp, h, &none, b"abc")
    });
    assert_eq!(r, [0x30, b'c', b'b', b'a']);
    let r = exchange(&mut cli, &mut dev, &|hp, h| {
        client::build_repeat_old_program(hp, h, &none, b"abc", 8)
    });
    assert_eq!(
        client::decode_reply(&r),
        Ok(Reply::Ok {
            truncated: false,
            data: b"cba"
        })
    );
    let r = exchange(&mut cli, &mut dev, &|hp, h| {
        client::build_repeat_old_program(hp, h, &none, b"abd", 8)
    });
    assert_eq!(
        client::decode_reply(&r),
        Ok(Reply::Error(ErrorCode::OLD_PROGRAM_CHECKSUM_DOESNT_MATCH))
    );
    let r = exchange(&mut cli, &mut dev, &|hp, h| {
        client::build_new_program(hp, h, &none, &[1, 0xEE])
    });
    assert_eq!(
        client::decode_reply(&r),
        Ok(Reply::Exception {
            truncated: false,
            data: &[0xEE, 1]
        })
    );
}
