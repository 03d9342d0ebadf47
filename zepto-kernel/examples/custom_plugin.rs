//! An application plugin: a LED blinker written as a state machine, registered next
//! to a built-in plugin and driven by a Zepto VM program. `docs/plugins.md` walks
//! through it; `tests/examples.rs` runs it.

use zepto_kernel::hal::Waiter;
use zepto_kernel::hal::WaitingFor;
use zepto_kernel::heap::{Handle, Heap, Parser};
use zepto_kernel::plugins::{
    Bodypart, Ping, Plugin, PluginException, PluginFault, PluginStep, USER_EXCEPTION,
};
use zepto_kernel::testhal::TestHal;
use zepto_kernel::vm::insn::Instruction;
use zepto_kernel::vm::reply::frames;
use zepto_kernel::vm::{ExecFlags, VmConfig, VmHal, VmSmall, VmStep};
use zepto_kernel::HeapMem;

/// Blinks a LED `n` times; the command is `n` as Encoded-Unsigned-Int<max=1>, the
/// reply is the number of blinks done (one byte).
pub struct Blinker {
    // Configuration of this body part: which pin, how fast. Never in the program.
    pub pin: u8,
    pub half_period_ms: u16,
    // State: fixed size, kept between the calls of one EXEC.
    toggles_left: u8,
    blinks: u8,
}

/// The exception the blinker throws for a bad blink count.
pub const BAD_COUNT: u16 = USER_EXCEPTION;

impl Blinker {
    pub const fn new(pin: u8, half_period_ms: u16) -> Self {
        Self {
            pin,
            half_period_ms,
            toggles_left: 0,
            blinks: 0,
        }
    }
}

impl Plugin for Blinker {
    fn init(&mut self, hal: &mut dyn VmHal) -> Result<(), zepto_kernel::Error> {
        hal.write_pin(self.pin, false)
    }

    fn handle(
        &mut self,
        command: &mut Parser,
        heap: &mut Heap<'_>,
        reply: Handle,
        hal: &mut dyn VmHal,
    ) -> Result<PluginStep, PluginFault> {
        if self.toggles_left == 0 {
            // A new call: parse the command.
            let n = command.uint(heap, 1)? as u8;
            if n == 0 || n > 20 {
                return Err(PluginFault::Exception(PluginException {
                    code: BAD_COUNT,
                    file_hash: 0x1234,
                    line: line!() as u16,
                }));
            }
            self.blinks = n;
            self.toggles_left = 2 * n;
        }
        // Called again after each wait: one toggle per call.
        let on = self.toggles_left.is_multiple_of(2);
        hal.write_pin(self.pin, on)?;
        self.toggles_left -= 1;
        if self.toggles_left > 0 {
            return Ok(PluginStep::Waiting(WaitingFor::time(u32::from(
                self.half_period_ms,
            ))));
        }
        heap.append_reply_u8(reply, self.blinks)?;
        Ok(PluginStep::Done)
    }

    fn abort(&mut self) {
        self.toggles_left = 0;
    }
}

pub fn main() {
    let mut heap_mem = HeapMem::<512, 4>::new();
    let mut heap = heap_mem.heap();
    let mut hal = TestHal::<64>::default();
    let mut vm = VmSmall::<4, 8>::new(VmConfig::default());

    // Register body parts: id 0 = built-in ping, id 5 = our blinker on pin 7.
    let mut ping = Ping;
    let mut blinker = Blinker::new(7, 250);
    let mut table = [Bodypart::new(0, &mut ping), Bodypart::new(5, &mut blinker)];
    zepto_kernel::plugins::init_all(&mut table, &mut hal).unwrap();

    // The program: EXEC 5 "03" ; EXEC 0 ""  (blink three times, then ping).
    let mut program = [0u8; 16];
    let mut len = 0;
    for insn in [
        Instruction::Exec {
            bodypart: 5,
            data: &[3],
        },
        Instruction::Exec {
            bodypart: 0,
            data: &[],
        },
    ] {
        len += insn.encode(&mut program[len..]).unwrap();
    }
    assert_eq!(&program[..len], [0x02, 0x0a, 0x01, 0x03, 0x02, 0x00, 0x00]);

    let h = heap.alloc().unwrap();
    heap.set_request(h, &program[..len]).unwrap();
    let flags = ExecFlags {
        is_first: true,
        is_last: false,
    };
    let mut step = vm.start(&mut heap, h, flags, &mut table, &mut hal).unwrap();
    while let VmStep::Waiting(w) = step {
        let wake = hal.wait_for(&w); // a real port sleeps here
        step = vm.resume(&mut heap, h, &mut table, &mut hal, wake).unwrap();
    }
    assert!(matches!(
        step,
        VmStep::Done {
            exception: None,
            ..
        }
    ));
    let bodies: Vec<&[u8]> = frames(heap.reply(h).unwrap())
        .map(|f| f.unwrap().body)
        .collect();
    assert_eq!(bodies, [&[3u8][..], &[1u8][..]]);
    assert_eq!(hal.now_ms, 5 * 250); // six toggles, five waits
    assert!(!hal.pins[7]);

    // A bad count: the exception lands in the blinker's frame, the program goes on.
    heap.set_request(h, &[0x02, 0x0a, 0x01, 0x00, 0x02, 0x00, 0x00])
        .unwrap();
    let step = vm.start(&mut heap, h, flags, &mut table, &mut hal).unwrap();
    assert!(matches!(
        step,
        VmStep::Done {
            exception: None,
            ..
        }
    ));
    let first = frames(heap.reply(h).unwrap()).next().unwrap().unwrap();
    assert_eq!(first.exception.map(|e| e.code), Some(BAD_COUNT));
    println!("blinker example: ok");
}
