//! Runs arbitrary bytes as a Zepto VM program at every level: no panic, every call
//! returns within the instruction budget, exception replies decode, and aborting
//! frees every pseudo-thread heap block.
#![no_main]
use libfuzzer_sys::fuzz_target;
use zepto_kernel::hal::Waiter;
use zepto_kernel::plugins::{Bodypart, DigitalPin, Echo, Ping, SimSensor};
use zepto_kernel::testhal::TestHal;
use zepto_kernel::vm::reply::decode_exception;
use zepto_kernel::vm::{ExecFlags, Vm, VmConfig, VmMedium, VmOne, VmSmall, VmStep, VmTiny};
use zepto_kernel::HeapMem;

fn cfg() -> VmConfig {
    VmConfig {
        budget: 64,
        guaranteed_payload: 48,
        max_reply_buffer: 200,
    }
}

fn run<const L: u8, const RS: usize, const ES: usize, const PT: usize>(
    vm: &mut Vm<L, RS, ES, PT>,
    program: &[u8],
    flags: ExecFlags,
) {
    let mut heap_mem = HeapMem::<1024, 8>::new();
    let mut heap = heap_mem.heap();
    let mut hal = TestHal::<64>::default();
    let (mut ping, mut echo, mut pin) = (Ping, Echo, DigitalPin { pin: 1 });
    let mut sensor = SimSensor::new(7, 9, 15);
    let mut table = [
        Bodypart::new(0, &mut ping),
        Bodypart::new(1, &mut echo),
        Bodypart::new(2, &mut pin),
        Bodypart::new(-1, &mut sensor),
    ];
    let Ok(h) = heap.alloc() else { return };
    if heap.set_request(h, program).is_err() {
        return;
    }
    let mut step = vm
        .start(&mut heap, h, flags, &mut table, &mut hal)
        .expect("start succeeds on a valid handle");
    for _ in 0..64 {
        match step {
            VmStep::Done { exception, .. } => {
                let reply = heap.reply(h).expect("reply");
                assert!(reply.len() <= 200);
                if let Some(e) = exception {
                    let d = decode_exception(reply).expect("exception reply decodes");
                    assert_eq!(d.code, e.code.code());
                }
                break;
            }
            VmStep::Waiting(w) => {
                let wake = hal.wait_for(&w);
                step = vm
                    .resume(&mut heap, h, &mut table, &mut hal, wake)
                    .expect("resume succeeds while running");
            }
        }
    }
    vm.abort(&mut heap, &mut table);
    assert_eq!(heap.handles_in_use(), 1);
}

fuzz_target!(|data: &[u8]| {
    let Some((&sel, program)) = data.split_first() else {
        return;
    };
    // A program must leave the 1024-byte heap room for its reply (a device's MTU
    // guarantees that); one that fills the heap is `Err(OutOfMemory)`, tested in
    // zepto-kernel/tests/vm.rs.
    if program.len() > 512 {
        return;
    }
    let flags = ExecFlags {
        is_first: sel & 4 == 0,
        is_last: sel & 4 != 0,
    };
    match sel & 3 {
        0 => run(&mut VmOne::new(cfg()), program, flags),
        1 => run(&mut VmTiny::<4>::new(cfg()), program, flags),
        2 => run(&mut VmSmall::<4, 8>::new(cfg()), program, flags),
        _ => run(&mut VmMedium::<4, 16, 4>::new(cfg()), program, flags),
    }
});
