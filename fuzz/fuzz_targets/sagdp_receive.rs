//! Feeds a sequence of arbitrary UP packets (with growing packet IDs, interleaved
//! with higher-layer sends and timer events) to an SAGDP device and client; nothing
//! may panic and the state machine must stay coherent. The device's type
//! (`Sagdp::slave`) must do what a slave chosen at run time does.
#![no_main]
use libfuzzer_sys::fuzz_target;
use zepto_kernel::sagdp::{Config, PacketId, PacketStatus, Role, RoleKind, Sagdp, State};
use zepto_kernel::{Error, HandlerOutcome, HeapMem};

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    if sel & 1 == 0 {
        // The device's type and a slave chosen at run time do the same.
        let device = run(Sagdp::slave(), rest);
        let either = run(Sagdp::new(Role::Slave, Config::SLAVE), rest);
        assert_eq!(device, either);
    } else {
        run(Sagdp::master(), rest);
    }
});

/// What one step gave: the outcome, the reply and the state after it.
type Step = (Result<HandlerOutcome, Error>, Vec<u8>, State);

/// Runs the steps of `rest` on `s` and returns what each gave.
fn run<R: RoleKind>(mut s: Sagdp<R>, mut rest: &[u8]) -> Vec<Step> {
    let mut log = Vec::new();
    let mut heap_mem = HeapMem::<512, 4>::new();
    let mut heap = heap_mem.heap();
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
                    let out = s.send(&mut heap, h, st, now, &mut ids);
                    let reply = heap.reply(h).expect("live").to_vec();
                    log.push((out, reply, s.state()));
                }
            }
            1 => {
                let out = s.on_timeout(&mut heap, h, now, &mut ids);
                let reply = heap.reply(h).expect("live").to_vec();
                log.push((out, reply, s.state()));
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
                log.push((out, heap.reply(h).expect("live").to_vec(), s.state()));
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
    log
}
