use crate::fake::FakeIpc;
use crate::placeholder::{self, PlaceholderService};
use crate::{command, ProcessIndex, Service};
use core::ops::ControlFlow;
use libtock_platform::ErrorCode;
use libtock_unittest::{fake, ExpectedSyscall, SyscallLogEntry};
use std::rc::Rc;
use std::vec;
use std::vec::Vec;

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
    Ipc::request(service, &mut buf).unwrap();
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
        Ipc::request(ProcessIndex(1), &mut buf),
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
        Ipc::request(ProcessIndex(3), &mut buf),
        Err(ErrorCode::NoMem)
    );
    assert_eq!(driver.take_notifications(), []);
}

#[test]
fn client_and_placeholder_round_trip() {
    let (_kernel, driver) = setup(1);
    let mut service = PlaceholderService::default();
    driver.add_service(SERVICE, 0, move |buf| service.answer(buf));
    let index = Ipc::discover(SERVICE).unwrap();

    let mut buf = [0u8; 16];
    placeholder::encode(&mut buf, placeholder::OP_LOAD, &[7, 8, 9]).unwrap();
    Ipc::request(index, &mut buf).unwrap();
    assert_eq!(
        placeholder::decode(&buf),
        Ok((placeholder::STATUS_OK, &[3u8][..]))
    );

    placeholder::encode(&mut buf, placeholder::OP_EXECUTE, &[]).unwrap();
    Ipc::request(index, &mut buf).unwrap();
    assert_eq!(
        placeholder::decode(&buf),
        Ok((placeholder::STATUS_OK, &[7u8, 8, 9][..]))
    );
}

/// Test service: records what it saw, answers with the placeholder, stops
/// after `stop_after` requests.
struct Recorder {
    driver: Rc<FakeIpc>,
    proto: PlaceholderService,
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
        self.proto.answer(buffer);
        if self.seen.len() >= self.stop_after {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    }
}

fn recorder(driver: &Rc<FakeIpc>, stop_after: usize) -> Recorder {
    Recorder {
        driver: driver.clone(),
        proto: PlaceholderService::default(),
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
    driver.queue_request(0, &[placeholder::OP_LOAD, 2, 0x10, 0x20, 0, 0]);
    driver.queue_request(3, &[placeholder::OP_EXECUTE, 0, 0, 0]);
    driver.queue_request(0, &[9, 0, 0]);

    let mut service = recorder(&driver, 3);
    Ipc::serve(SERVICE, &mut service).unwrap();

    assert_eq!(service.ready_as, Some(ProcessIndex(2)));
    assert_eq!(
        service.seen,
        [
            (0, vec![0, 2, 0x10, 0x20, 0, 0]),
            (3, vec![1, 0, 0, 0]),
            (0, vec![9, 0, 0]),
        ]
    );
    assert_eq!(
        driver.take_replies(),
        [
            (0, vec![placeholder::STATUS_OK, 1, 2, 0x20, 0, 0]),
            (3, vec![placeholder::STATUS_OK, 2, 0x10, 0x20]),
            (0, vec![placeholder::STATUS_UNKNOWN_OP, 1, 9]),
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
    let inbox = crate::Inbox::default();
    inbox.upcall(3, 8, 0x1000);
    inbox.upcall(1, 4, 0x2000);
    inbox.upcall(7, 4, 0x3000); // out of range: dropped
    assert_eq!(inbox.take(), Some((ProcessIndex(1), 4, 0x2000)));
    assert_eq!(inbox.take(), Some((ProcessIndex(3), 8, 0x1000)));
    assert_eq!(inbox.take(), None);
}

mod placeholder_protocol {
    use super::placeholder::*;
    use std::vec;
    use std::vec::Vec;

    fn answer(service: &mut PlaceholderService, request: &[u8], size: usize) -> Vec<u8> {
        let mut buf = vec![0xEEu8; size];
        buf[..request.len()].copy_from_slice(request);
        service.answer(&mut buf);
        buf
    }

    #[test]
    fn encode_decode_round_trip() {
        let mut buf = [0u8; 8];
        assert_eq!(encode(&mut buf, 5, &[1, 2, 3]), Ok(5));
        assert_eq!(buf[..5], [5, 3, 1, 2, 3]);
        assert_eq!(decode(&buf), Ok((5, &[1u8, 2, 3][..])));
        assert_eq!(encode(&mut buf, 5, &[0; 7]), Err(MessageError::DoesNotFit));
        assert_eq!(
            encode(&mut [0u8; 300], 5, &[0; 256]),
            Err(MessageError::DoesNotFit)
        );
        assert_eq!(decode(&[1]), Err(MessageError::DoesNotFit));
        assert_eq!(decode(&[1, 3, 0, 0]), Err(MessageError::DoesNotFit));
    }

    #[test]
    fn load_then_execute_echoes_program() {
        let mut s = PlaceholderService::default();
        assert_eq!(
            answer(&mut s, &[OP_EXECUTE, 0], 4),
            [STATUS_NO_PROGRAM, 0, 0xEE, 0xEE]
        );
        assert_eq!(
            answer(&mut s, &[OP_LOAD, 3, 4, 5, 6], 8)[..3],
            [STATUS_OK, 1, 3]
        );
        assert_eq!(
            answer(&mut s, &[OP_EXECUTE, 0], 8)[..5],
            [STATUS_OK, 3, 4, 5, 6]
        );
        // An empty LOAD replaces the program with an empty one.
        assert_eq!(answer(&mut s, &[OP_LOAD, 0], 4)[..3], [STATUS_OK, 1, 0]);
        assert_eq!(
            answer(&mut s, &[OP_EXECUTE, 0], 4),
            [STATUS_OK, 0, 0xEE, 0xEE]
        );
    }

    #[test]
    fn unknown_op_is_error_reply() {
        let mut s = PlaceholderService::default();
        assert_eq!(answer(&mut s, &[2, 0], 4), [STATUS_UNKNOWN_OP, 1, 2, 0xEE]);
        assert_eq!(
            answer(&mut s, &[0xFF, 1, 0], 4),
            [STATUS_UNKNOWN_OP, 1, 0xFF, 0xEE]
        );
    }

    #[test]
    fn malformed_requests() {
        let mut s = PlaceholderService::default();
        // Length beyond the buffer.
        assert_eq!(
            answer(&mut s, &[OP_LOAD, 9, 1], 4),
            [STATUS_MALFORMED, 0, 1, 0xEE]
        );
        // Program too large; previous program kept.
        assert_eq!(answer(&mut s, &[OP_LOAD, 1, 42], 4)[..3], [STATUS_OK, 1, 1]);
        let mut big = vec![OP_LOAD, 33];
        big.extend([0u8; 33]);
        assert_eq!(answer(&mut s, &big, 40)[..2], [STATUS_MALFORMED, 0]);
        assert_eq!(answer(&mut s, &[OP_EXECUTE, 0], 4)[..3], [STATUS_OK, 1, 42]);
        // Reply that does not fit the buffer.
        let mut full = vec![OP_LOAD, 32];
        full.extend([7u8; 32]);
        assert_eq!(answer(&mut s, &full, 34)[..3], [STATUS_OK, 1, 32]);
        assert_eq!(
            answer(&mut s, &[OP_EXECUTE, 0], 8)[..2],
            [STATUS_MALFORMED, 0]
        );
        // Too short for a header: untouched.
        let mut one = [OP_EXECUTE];
        s.answer(&mut one);
        assert_eq!(one, [OP_EXECUTE]);
        s.answer(&mut []);
    }
}
