//! The region rules: what the service may touch, refusals end to end with
//! the fake kernel, conforming client buffers.
use crate::fake::FakeIpc;
use crate::regions::Unit;
use crate::{
    command, Buffer128, Buffer32, Buffer64, ErrorCode, ProcessIndex, Refusal, RegionRules, Regions,
    Service, SharedBuffer,
};
use core::ops::ControlFlow;
use libtock_unittest::fake;
use std::rc::Rc;
use std::vec;
use std::vec::Vec;

type Ipc = crate::Ipc<fake::Syscalls>;

const PMP: RegionRules = RegionRules::QEMU_RV32_VIRT;
const MPU: RegionRules = RegionRules::CORTEX_M4;

#[test]
fn pmp_maps_exactly_word_aligned_whole_words() {
    for (ptr, len, maps) in [
        (0x8030_0000, 4, true),
        (0x8030_0004, 32, true),
        (0x8030_0004, 12, true),
        (0x8030_0001, 3, false),  // odd address, 3 bytes
        (0x8030_0001, 32, false), // odd address, 32 bytes
        (0x8030_0002, 32, false),
        (0x8030_0000, 6, false), // length not a multiple of 4
        (0x8030_0000, 0, false),
        (0xffff_fffc, 8, false), // wraps
    ] {
        assert_eq!(PMP.always_maps(ptr, len), maps, "{ptr:#x} {len}");
        assert_eq!(PMP.may_map(ptr, len), maps, "{ptr:#x} {len}");
    }
}

#[test]
fn cortex_m_maps_power_of_two_at_own_alignment() {
    for (ptr, len, always, may) in [
        (0x2000_0000, 32, true, true),
        (0x2000_0040, 64, true, true),
        (0x2000_0100, 256, true, true),
        (0x2000_0020, 64, false, true), // subregions perhaps
        (0x2000_0020, 96, false, true),
        (0x2000_0004, 32, false, false), // start rounds up past the buffer
        (0x2000_0000, 16, false, false), // below the 32-byte minimum
        (0x2000_0000, 4, false, false),
    ] {
        assert_eq!(MPU.always_maps(ptr, len), always, "{ptr:#x} {len}");
        assert_eq!(MPU.may_map(ptr, len), may, "{ptr:#x} {len}");
    }
}

#[test]
fn refusal_markers_are_never_mapped() {
    for why in [Refusal::Rules, Refusal::NotFirst, Refusal::NoRegion] {
        let len = why as u32;
        assert_eq!(Refusal::from_len(len), Some(why));
        for ptr in [0x8030_0000, 0x8030_0001, 0x2000_0000] {
            assert!(!PMP.may_map(ptr, len) && !MPU.may_map(ptr, len));
        }
    }
    assert_eq!(Refusal::from_len(0), None);
    assert_eq!(Refusal::from_len(4), None);
}

#[test]
fn shared_buffers_conform_on_every_unit() {
    fn check<B: SharedBuffer>(mut b: B) {
        let s = b.bytes();
        let (ptr, len) = (s.as_ptr() as usize, s.len());
        assert_eq!(ptr % len, 0, "aligned to its length");
        // Host addresses are 64-bit; the rules look at the low bits only.
        let ptr = (ptr % (1 << 20)) as u32 + 0x2000_0000;
        assert!(PMP.always_maps(ptr, len as u32) && MPU.always_maps(ptr, len as u32));
    }
    check(Buffer32::new());
    check(Buffer64::new());
    check(Buffer128::new());
}

#[test]
fn one_buffer_per_client_fixed_at_first_use() {
    let r = Regions::<4>::new(PMP);
    let a = 0x8031_0000;
    assert_eq!(r.check(1, 3, a + 1), Err(Refusal::Rules));
    assert_eq!(r.check(1, 32, a + 1), Err(Refusal::Rules));
    assert_eq!(r.check(1, 32, a), Ok(())); // first accepted: fixed
    assert_eq!(r.check(1, 32, a), Ok(())); // same again (kernel: overlap, still mapped)
    assert_eq!(r.check(1, 8, a + 8), Ok(())); // inside it
    assert_eq!(r.check(1, 3, a + 65), Err(Refusal::Rules)); // odd, after the first
    assert_eq!(r.check(1, 64, a), Err(Refusal::NotFirst)); // grown
    assert_eq!(r.check(1, 32, a + 64), Err(Refusal::NotFirst)); // second buffer (mapped)
    assert_eq!(r.check(1, 0, 0), Ok(())); // no buffer
                                          // Client 2's first buffer takes the last of 3 regions; client 3 finds none.
    assert_eq!(r.check(2, 32, 0x8032_0000), Ok(()));
    assert_eq!(r.check(3, 32, 0x8033_0000), Err(Refusal::NoRegion));
    // Index beyond the table: never touched, but still replayed.
    assert_eq!(r.check(7, 32, 0x8034_0000), Err(Refusal::NotFirst));
    assert_eq!(r.check(1, 32, a), Ok(()));
    assert_eq!(r.check(2, 32, 0x8032_0000), Ok(()));
}

#[test]
fn a_region_of_unknown_state_is_counted_and_blocks_overlaps() {
    let r = Regions::<4>::new(RegionRules {
        unit: Unit::CortexM,
        regions: 2,
    });
    // 96 B at a 32-byte boundary: the kernel may map it with subregions.
    assert_eq!(r.check(1, 96, 0x2000_0020), Err(Refusal::Rules));
    // A conforming buffer overlapping it may or may not have been mapped.
    assert_eq!(r.check(1, 64, 0x2000_0040), Err(Refusal::NoRegion));
    // Both may have taken a region: nothing is certain any more.
    assert_eq!(r.check(2, 32, 0x2001_0000), Err(Refusal::NoRegion));
}

#[test]
fn client_sees_refusals_as_errors_and_its_buffer_untouched() {
    let kernel = fake::Kernel::new();
    let driver = FakeIpc::new(0);
    kernel.add_driver(&driver);
    let answers = Rc::new(core::cell::Cell::new(0usize));
    let a = answers.clone();
    driver.add_refusing_service(b"svc", 1, move |buf| {
        assert!(
            buf.iter().all(|b| *b == 7),
            "a refused buffer is not written"
        );
        a.get()
    });
    let service = Ipc::discover(b"svc").unwrap();
    let mut buf = Buffer32([7; 32]);
    for (marker, err) in [
        (1, ErrorCode::Invalid),
        (2, ErrorCode::Already),
        (3, ErrorCode::NoMem),
    ] {
        answers.set(marker);
        assert_eq!(Ipc::request(service, &mut buf), Err(err));
        assert_eq!(
            crate::refusal_error(Refusal::from_len(marker as u32).unwrap()),
            err
        );
    }
    answers.set(0);
    assert_eq!(Ipc::request(service, &mut buf), Ok(()));
    assert_eq!(buf.0, [7; 32]);
}

/// Echo service that reverses every accepted buffer and records refusals.
struct Reverser {
    driver: Rc<FakeIpc>,
    handled: Vec<(u32, usize)>,
    refused: Vec<(u32, Refusal)>,
    stop_after: usize,
}

impl Service for Reverser {
    fn ready(&mut self, _own: ProcessIndex) {
        self.driver.deliver_next();
    }
    fn handle(&mut self, client: ProcessIndex, buffer: &mut [u8]) -> ControlFlow<()> {
        buffer.reverse();
        self.handled.push((client.get(), buffer.len()));
        if self.handled.len() >= self.stop_after {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    }
    fn refused(&mut self, client: ProcessIndex, why: Refusal) {
        self.refused.push((client.get(), why));
    }
}

#[test]
fn serve_refuses_unmapped_buffers_unread_and_goes_on() {
    let kernel = fake::Kernel::new();
    let driver = FakeIpc::new(2);
    kernel.add_driver(&driver);
    driver.add_process(b"svc", 2);
    driver.add_process(b"good", 0);
    driver.add_process(b"bad", 1);
    driver.add_process(b"late", 3);
    let req = [1u8, 2, 3];
    driver.queue_request_at(0, 0, &req, 32); // good: first buffer
    driver.queue_request_at(1, 1, &req, 3); // odd address, 3 bytes
    driver.queue_request_at(1, 1, &req, 32); // odd address, 32 bytes
    driver.queue_request_at(1, 0, &req, 32); // bad's first conforming buffer
    driver.queue_request_at(1, 0, &req, 64); // grown
    driver.queue_request_at(0, 0, &req, 32); // good goes on
    driver.queue_request_at(1, 64, &req, 32); // a second buffer (takes the last region)
    driver.queue_request_at(3, 0, &req, 32); // a third client: no region left
    driver.queue_request_at(0, 0, &req, 32); // good goes on
    let mut svc = Reverser {
        driver: driver.clone(),
        handled: Vec::new(),
        refused: Vec::new(),
        stop_after: 4,
    };
    Ipc::serve(b"svc", &mut svc).unwrap();
    assert_eq!(svc.handled, [(0, 32), (1, 32), (0, 32), (0, 32)]);
    assert_eq!(
        svc.refused,
        [
            (1, Refusal::Rules),
            (1, Refusal::Rules),
            (1, Refusal::NotFirst),
            (1, Refusal::NotFirst),
            (3, Refusal::NoRegion),
        ]
    );
    // Refused buffers are as the client left them (request, then 0xAA).
    let untouched = |len: usize| {
        let mut v = req.to_vec();
        v.resize(len, 0xAA);
        v
    };
    assert_eq!(
        driver.take_refusals(),
        [
            (1, 1, untouched(3)),
            (1, 1, untouched(32)),
            (1, 2, untouched(64)),
            (1, 2, untouched(32)),
            (3, 3, untouched(32)),
        ]
    );
    let mut reversed = untouched(32);
    reversed.reverse();
    assert_eq!(
        driver.take_replies(),
        vec![
            (0, reversed.clone()),
            (1, reversed.clone()),
            (0, reversed.clone()),
            (0, reversed)
        ]
    );
    assert_eq!(driver.take_notifications().len(), 9);
    assert!(driver
        .take_notifications()
        .iter()
        .all(|(c, _)| *c == command::NOTIFY_CLIENT));
}
