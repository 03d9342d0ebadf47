//! Feeds a sequence of arbitrary UP packets (with growing packet IDs, interleaved
//! with higher-layer sends and timer events) to an SAGDP device and client; nothing
//! may panic and the state machine must stay coherent.
#![no_main]
use libfuzzer_sys::fuzz_target;
use zepto_kernel::sagdp::{PacketId, PacketStatus, Sagdp, State};
use zepto_kernel::{Error, HandlerOutcome, HeapMem};

fuzz_target!(|data: &[u8]| {
    let Some((&sel, mut rest)) = data.split_first() else {
        return;
    };
    let mut heap_mem = HeapMem::<512, 4>::new();
    let mut heap = heap_mem.heap();
    let mut s = if sel & 1 == 0 {
        Sagdp::slave()
    } else {
        Sagdp::master()
    };
    s.init(&mut heap).expect("fresh heap");
    let h = heap.alloc().expect("fresh heap");
    let mut next = 1u64;
    let mut ids = || {
        next += 1;
        PacketId::new(next)
    };
    let mut rx = 1u64 << 40;
    let mut now = 0u64;
    while let Some((&len, tail)) = rest.split_first() {
        let n = usize::from(len % 24).min(tail.len());
        let (pkt, tail) = tail.split_at(n);
        rest = tail;
        now += u64::from(len) * 37;
        match len >> 6 {
            0 => {
                let st = [
                    PacketStatus::First,
                    PacketStatus::Intermediate,
                    PacketStatus::Terminating,
                    PacketStatus::ErrorMessage,
                ][usize::from(len & 3)];
                if heap.set_request(h, pkt).is_ok() {
                    let _ = s.send(&mut heap, h, st, now, &mut ids);
                }
            }
            1 => {
                let _ = s.on_timeout(&mut heap, h, now, &mut ids);
            }
            _ => {
                rx += 1;
                if heap.set_request(h, pkt).is_err() {
                    continue;
                }
                let state = s.state();
                let out = s.receive(
                    &mut heap,
                    h,
                    PacketId::new(rx).expect("48 bits"),
                    now,
                    &mut ids,
                );
                match out {
                    Err(Error::Malformed | Error::UnexpectedEnd) => assert_eq!(s.state(), state),
                    Ok(HandlerOutcome::FatalErrorReinit) => {
                        assert_eq!(s.state(), State::NotInitialized);
                        assert_eq!(heap.reply(h).expect("live").first(), Some(&0x03));
                    }
                    Ok(HandlerOutcome::Pass) => {
                        let payload = pkt.get(7..).unwrap_or(&[]);
                        assert_eq!(heap.reply(h).expect("live"), payload);
                    }
                    _ => {}
                }
            }
        }
        if s.state() == State::NotInitialized {
            s.init(&mut heap).expect("handle kept");
        }
        assert_eq!(heap.handles_in_use(), 2);
    }
});
