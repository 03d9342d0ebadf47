//! Feeds arbitrary command packets to the SACCP device side after a known program;
//! nothing may panic, every rejection must be a decodable ERROR reply and must leave
//! the kept program unchanged.
#![no_main]
use libfuzzer_sys::fuzz_target;
use zepto_kernel::saccp::client::{decode_reply, Reply};
use zepto_kernel::saccp::Saccp;
use zepto_kernel::sagdp::PacketStatus;
use zepto_kernel::{HandlerOutcome, HeapMem};

fuzz_target!(|data: &[u8]| {
    let mut heap_mem = HeapMem::<1024, 4>::new();
    let mut heap = heap_mem.heap();
    let mut c = Saccp::new();
    c.init(&mut heap).expect("fresh heap");
    let h = heap.alloc().expect("fresh heap");
    heap.set_request(h, b"\x02ABCDEFGHIJKLMNOPQRSTUVWXYZ")
        .expect("fits");
    assert_eq!(
        c.receive(&mut heap, h, PacketStatus::First),
        Ok(HandlerOutcome::Pass)
    );
    for chunk in data.split(|b| *b == 0xFF) {
        let before = c.old_program(&heap).expect("live").map(<[u8]>::to_vec);
        if heap.set_request(h, chunk).is_err() {
            return;
        }
        match c.receive(&mut heap, h, PacketStatus::Intermediate) {
            Ok(HandlerOutcome::Pass) => {
                assert_eq!(
                    c.old_program(&heap).expect("live"),
                    Some(heap.reply(h).expect("live"))
                );
            }
            Ok(HandlerOutcome::ReplyDown) => {
                assert!(matches!(
                    decode_reply(heap.reply(h).expect("live")),
                    Ok(Reply::Error(_))
                ));
                assert_eq!(
                    c.old_program(&heap).expect("live").map(<[u8]>::to_vec),
                    before
                );
            }
            Ok(other) => panic!("unexpected outcome {other:?}"),
            Err(_) => {}
        }
    }
});
