//! Feeds a sequence of arbitrary client buffers (from arbitrary slots, with time
//! passing between them) to the local service: no panic, every reply decodes with
//! the status `handle` returned, and finished programs are delivered well-formed.
#![no_main]
use libfuzzer_sys::fuzz_target;
use zepto_kernel::plugins::{Bodypart, DigitalPin, Echo, Ping, SimSensor};
use zepto_kernel::service::{decode_reply, Service, PENDING_REPLY, REPLY_HEADER};
use zepto_kernel::testhal::TestHal;
use zepto_kernel::vm::{VmConfig, VmMedium};

fuzz_target!(|data: &[u8]| {
    let mut hal = TestHal::<64>::default();
    let (mut ping, mut echo, mut pin) = (Ping, Echo, DigitalPin { pin: 1 });
    let mut sensor = SimSensor::new(7, 9, 15);
    let mut table = [
        Bodypart::new(0, &mut ping),
        Bodypart::new(1, &mut echo),
        Bodypart::new(2, &mut pin),
        Bodypart::new(-1, &mut sensor),
    ];
    let cfg = VmConfig {
        budget: 64,
        guaranteed_payload: 48,
        max_reply_buffer: 200,
    };
    let Ok(mut svc) = Service::<'_, '_, VmMedium<4, 8, 2>, 3, 48, 512, 4>::new(
        VmMedium::new(cfg),
        &mut table,
        &mut hal,
    ) else {
        return;
    };
    // Each chunk: slot, time step, buffer length, then the buffer bytes.
    let mut rest = data;
    while let [slot, dt, len, tail @ ..] = rest {
        let n = usize::from(*len).min(tail.len());
        let (bytes, next) = tail.split_at(n);
        rest = next;
        let mut buf = bytes.to_vec();
        let status = svc.handle(usize::from(*slot % 4), &mut buf, &mut hal);
        if buf.len() >= REPLY_HEADER {
            let r = decode_reply(&buf).expect("reply decodes");
            assert_eq!(r.status, status);
        }
        hal.now_ms += u64::from(*dt);
        if let Some(s) = svc.poll(&mut hal).finished {
            let mut out = [0u8; 64];
            out[..REPLY_HEADER].copy_from_slice(&PENDING_REPLY);
            let st = svc.deliver(s, &mut out).expect("finished slot delivers");
            assert_eq!(decode_reply(&out).expect("reply decodes").status, st);
        }
    }
});
