use crate::fake::FakeIpc;
use crate::{command, Buffer32, ProcessIndex, RegionRules, Request, Service};
use core::ops::ControlFlow;
use libtock_platform::ErrorCode;
use libtock_unittest::{fake, ExpectedSyscall, SyscallLogEntry};
use std::boxed::Box;
use std::rc::Rc;
use std::vec;
use std::vec::Vec;
use zepto_kernel::plugins::{Bodypart, Echo, Ping};
use zepto_kernel::service::{self as proto, Op, Status};
use zepto_kernel::testhal::TestHal;
use zepto_kernel::vm::{VmConfig, VmTiny};

type Ipc = crate::Ipc<fake::Syscalls>;

const SERVICE: &[u8] = b"zepto-service";
const CLIENT: &[u8] = b"zepto-client";

fn setup(own_index: u32) -> (fake::Kernel, Rc<FakeIpc>) {
    let kernel = fake::Kernel::new();
    let driver = FakeIpc::new(own_index);
    kernel.add_driver(&driver);
    (kernel, driver)
}

#[test]
fn exists_only_with_driver() {
    let kernel = fake::Kernel::new();
    assert_eq!(Ipc::exists(), Err(ErrorCode::NoDevice));
    drop(kernel);
    let (_kernel, _driver) = setup(0);
    assert_eq!(Ipc::exists(), Ok(()));
}

#[test]
fn discover_matches_exact_name() {
    let (kernel, driver) = setup(1);
    driver.add_process(SERVICE, 2);
    driver.add_process(CLIENT, 1);
    assert_eq!(Ipc::discover(SERVICE), Ok(ProcessIndex(2)));
    assert_eq!(Ipc::discover(CLIENT), Ok(ProcessIndex(1)));
    assert_eq!(Ipc::discover(b"zepto-serv"), Err(ErrorCode::NoDevice));
    assert_eq!(Ipc::discover(b"zepto-service\0"), Err(ErrorCode::NoDevice));
    // The name is shared on read-only allow 0 and unshared afterwards.
    let log = kernel.take_syscall_log();
    assert!(log.contains(&SyscallLogEntry::AllowRo {
        driver_num: crate::DRIVER_NUM,
        buffer_num: 0,
        len: SERVICE.len(),
    }));
    assert!(log.contains(&SyscallLogEntry::AllowRo {
        driver_num: crate::DRIVER_NUM,
        buffer_num: 0,
        len: 0,
    }));
}

#[test]
fn discover_rejects_index_beyond_supported_slots() {
    let (_kernel, driver) = setup(0);
    driver.add_process(SERVICE, 4);
    assert_eq!(Ipc::discover(SERVICE), Err(ErrorCode::Invalid));
}

#[test]
fn process_index_bounds() {
    assert_eq!(ProcessIndex::new(3).map(ProcessIndex::get), Ok(3));
    assert_eq!(ProcessIndex::new(4), Err(ErrorCode::Invalid));
}

#[test]
fn request_shares_buffer_on_service_slot_and_gets_reply_in_place() {
    let (kernel, driver) = setup(0);
    driver.add_service(SERVICE, 2, |buf| {
        // Reverse the request to prove the service saw our bytes.
        buf.reverse();
    });
    let service = Ipc::discover(SERVICE).unwrap();
    kernel.take_syscall_log();

    let mut buf = *b"abcd";
    Ipc::request_any(service, &mut buf, None).unwrap();
    assert_eq!(&buf, b"dcba");
    assert_eq!(driver.take_notifications(), [(command::NOTIFY_SERVICE, 2)]);

    let log = kernel.take_syscall_log();
    assert_eq!(
        log[0],
        SyscallLogEntry::AllowRw {
            driver_num: crate::DRIVER_NUM,
            buffer_num: 2,
            len: 4,
        }
    );
    assert_eq!(
        log[1],
        SyscallLogEntry::Subscribe {
            driver_num: crate::DRIVER_NUM,
            subscribe_num: 2,
        }
    );
    assert!(log.contains(&SyscallLogEntry::YieldWait));
    // Buffer unshared when the request is over.
    assert!(log.contains(&SyscallLogEntry::AllowRw {
        driver_num: crate::DRIVER_NUM,
        buffer_num: 2,
        len: 0,
    }));
}

#[test]
fn request_to_missing_process_fails_and_unshares() {
    let (kernel, _driver) = setup(0);
    let mut buf = [0u8; 4];
    // The kernel answers INVAL when no process has that index.
    assert_eq!(
        Ipc::request_any(ProcessIndex(1), &mut buf, None),
        Err(ErrorCode::Invalid)
    );
    assert!(!fake::Kernel::is_upcall_pending());
    let log = kernel.take_syscall_log();
    assert!(!log.contains(&SyscallLogEntry::YieldWait));
    // Buffer unshared and upcall unsubscribed (logged as a second subscribe).
    assert!(log.contains(&SyscallLogEntry::AllowRw {
        driver_num: crate::DRIVER_NUM,
        buffer_num: 1,
        len: 0,
    }));
    assert_eq!(
        log.iter()
            .filter(|e| matches!(
                e,
                SyscallLogEntry::Subscribe {
                    subscribe_num: 1,
                    ..
                }
            ))
            .count(),
        2
    );
}

#[test]
fn request_reports_subscribe_failure() {
    let (kernel, driver) = setup(0);
    driver.add_service(SERVICE, 3, |_| panic!("must not be called"));
    kernel.add_expected_syscall(ExpectedSyscall::AllowRw {
        driver_num: crate::DRIVER_NUM,
        buffer_num: 3,
        return_error: None,
    });
    kernel.add_expected_syscall(ExpectedSyscall::Subscribe {
        driver_num: crate::DRIVER_NUM,
        subscribe_num: 3,
        skip_with_error: Some(ErrorCode::NoMem),
    });
    let mut buf = [0u8; 4];
    assert_eq!(
        Ipc::request_any(ProcessIndex(3), &mut buf, None),
        Err(ErrorCode::NoMem)
    );
    assert_eq!(driver.take_notifications(), []);
}

type ZeptoService = proto::Service<'static, 'static, VmTiny<4>, 4, 32, 256, 2>;

/// The zepto-kernel service protocol with Ping as body part 1 and Echo as 2
/// (its plugin table lives for the rest of the test process).
fn zepto_service() -> (ZeptoService, TestHal<64>) {
    let table = Box::leak(Box::new([
        Bodypart::new(1, Box::leak(Box::new(Ping))),
        Bodypart::new(2, Box::leak(Box::new(Echo))),
    ]));
    let mut hal = TestHal::default();
    let svc = proto::Service::new(VmTiny::new(VmConfig::default()), table, &mut hal).unwrap();
    (svc, hal)
}

/// `EXEC 1` (Ping) and its reply buffer (one frame, body 0x01).
const PING: [u8; 3] = [0x02, 0x02, 0x00];
const PING_REPLY: [u8; 2] = [0x05, 0x01];

#[test]
fn client_and_zepto_service_round_trip() {
    let (_kernel, driver) = setup(1);
    let (mut svc, mut hal) = zepto_service();
    driver.add_service(SERVICE, 0, move |buf| {
        svc.handle(1, buf, &mut hal);
    });
    let index = Ipc::discover(SERVICE).unwrap();

    let mut buf = Buffer32::new();
    proto::encode_request(&mut buf.0, Op::Load, &PING).unwrap();
    Ipc::request(index, &mut buf).unwrap();
    assert_eq!(buf.0[..4], [0, 0, 0, 0]);

    proto::encode_request(&mut buf.0, Op::Execute, &[]).unwrap();
    Ipc::request(index, &mut buf).unwrap();
    let r = proto::decode_reply(&buf.0).unwrap();
    assert_eq!((r.status, r.data), (Status::Ok, &PING_REPLY[..]));

    buf.0[0] = 9;
    Ipc::request(index, &mut buf).unwrap();
    assert_eq!(buf.0[..4], [Status::UnknownOp as u8, 9, 0, 0]);
}

#[test]
fn request_timeout_gives_up_with_noack() {
    let (kernel, driver) = setup(0);
    let alarm = fake::Alarm::new(1000);
    kernel.add_driver(&alarm);
    // A process that never answers (e.g. not subscribed yet).
    driver.add_process(SERVICE, 2);
    let service = Ipc::discover(SERVICE).unwrap();
    let mut buf = Buffer32::new();
    assert_eq!(
        Ipc::request_timeout(service, &mut buf, 20),
        Err(ErrorCode::NoAck)
    );
    assert_eq!(driver.take_notifications(), [(command::NOTIFY_SERVICE, 2)]);
}

#[test]
fn request_timeout_returns_the_reply_in_time() {
    let (kernel, driver) = setup(0);
    let alarm = fake::Alarm::new(1000);
    kernel.add_driver(&alarm);
    driver.add_service(SERVICE, 2, |buf| buf.reverse());
    let service = Ipc::discover(SERVICE).unwrap();
    let mut buf = *b"xyz";
    Ipc::request_any(service, &mut buf, Some(500)).unwrap();
    assert_eq!(&buf, b"zyx");
}

/// Test service: records what it saw, answers with the zepto-kernel service
/// protocol, stops after `stop_after` requests.
struct Recorder {
    driver: Rc<FakeIpc>,
    proto: ZeptoService,
    hal: TestHal<64>,
    ready_as: Option<ProcessIndex>,
    seen: Vec<(u32, Vec<u8>)>,
    stop_after: usize,
}

impl Service for Recorder {
    fn ready(&mut self, own: ProcessIndex) {
        self.ready_as = Some(own);
        // Clients start sending once the service listens.
        self.driver.deliver_next();
    }

    fn handle(&mut self, client: ProcessIndex, buffer: &mut [u8]) -> ControlFlow<()> {
        self.seen.push((client.get(), buffer.to_vec()));
        self.proto
            .handle(client.get() as usize, buffer, &mut self.hal);
        if self.seen.len() >= self.stop_after {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    }
}

fn recorder(driver: &Rc<FakeIpc>, stop_after: usize) -> Recorder {
    let (proto, hal) = zepto_service();
    Recorder {
        driver: driver.clone(),
        proto,
        hal,
        ready_as: None,
        seen: Vec::new(),
        stop_after,
    }
}

#[test]
fn serve_answers_requests_in_client_memory() {
    let (kernel, driver) = setup(2);
    driver.add_process(SERVICE, 2);
    driver.add_process(CLIENT, 0);
    driver.add_process(b"other-client", 3);
    // Buffers of 8 and 4 bytes at 1 KiB boundaries: mapped on qemu_rv32_virt.
    driver.queue_request(0, &[0, 3, 0, 0x02, 0x02, 0x00, 0, 0]);
    driver.queue_request(3, &[1, 0, 0, 0]);
    driver.queue_request(0, &[1, 0, 0, 0, 0, 0, 0, 0]);

    let mut service = recorder(&driver, 3);
    Ipc::serve(SERVICE, &mut service).unwrap();

    assert_eq!(service.ready_as, Some(ProcessIndex(2)));
    assert_eq!(
        service.seen,
        [
            (0, vec![0, 3, 0, 0x02, 0x02, 0x00, 0, 0]),
            (3, vec![1, 0, 0, 0]),
            (0, vec![1, 0, 0, 0, 0, 0, 0, 0]),
        ]
    );
    assert_eq!(
        driver.take_replies(),
        [
            // LOAD into client 0's slot: OK.
            (0, vec![0, 0, 0, 0, 0x02, 0x00, 0, 0]),
            // Client 3 has loaded nothing: its slot is separate.
            (3, vec![Status::NoProgram as u8, 0, 0, 0]),
            // EXECUTE in client 0's slot: OK with Ping's reply frame.
            (0, vec![0, 0, 2, 0, 0x05, 0x01, 0, 0]),
        ]
    );
    assert_eq!(
        driver.take_notifications(),
        [
            (command::NOTIFY_CLIENT, 0),
            (command::NOTIFY_CLIENT, 3),
            (command::NOTIFY_CLIENT, 0),
        ]
    );
    // Subscribed on its own index; unsubscribed (null upcall, logged as a
    // second subscribe) when serve returns.
    let log = kernel.take_syscall_log();
    let subscribes: Vec<_> = log
        .iter()
        .filter(|e| matches!(e, SyscallLogEntry::Subscribe { .. }))
        .collect();
    let own = SyscallLogEntry::Subscribe {
        driver_num: crate::DRIVER_NUM,
        subscribe_num: 2,
    };
    assert_eq!(subscribes, [&own, &own]);
}

#[test]
fn serve_handles_client_without_buffer() {
    let (_kernel, driver) = setup(1);
    driver.add_process(SERVICE, 1);
    driver.add_process(CLIENT, 0);
    driver.queue_request(0, &[]);
    let mut service = recorder(&driver, 1);
    Ipc::serve(SERVICE, &mut service).unwrap();
    assert_eq!(service.seen, [(0, vec![])]);
    assert_eq!(driver.take_notifications(), [(command::NOTIFY_CLIENT, 0)]);
}

#[test]
fn serve_without_own_name_fails() {
    let (_kernel, driver) = setup(1);
    driver.add_process(CLIENT, 0);
    let mut service = recorder(&driver, 1);
    assert_eq!(Ipc::serve(SERVICE, &mut service), Err(ErrorCode::NoDevice));
    assert_eq!(service.ready_as, None);
}

#[test]
fn inbox_keeps_one_request_per_client() {
    use libtock_platform::subscribe::Upcall;
    let inbox = crate::Inbox::new(RegionRules::QEMU_RV32_VIRT);
    inbox.upcall(3, 8, 0x1000);
    inbox.upcall(1, 4, 0x2000);
    inbox.upcall(7, 4, 0x3000); // out of range: dropped
    let r = inbox.take().unwrap();
    assert_eq!((r.client, r.len()), (ProcessIndex(1), 4));
    let r = inbox.take().unwrap();
    assert_eq!((r.client, r.len()), (ProcessIndex(3), 8));
    assert_eq!(inbox.take(), None);
    // A client without a buffer: empty.
    inbox.upcall(2, 0, 0);
    let r: Request = inbox.take().unwrap();
    assert!(r.is_empty());
    assert_eq!(r.with_buffer(|b| b.len()), Ok(0));
}
