//! C code built with `_FORTIFY_SOURCE=2` (csrc/fortified.c), as
//! distributions build C libraries: its reads, receives and polls go
//! through glibc's checked entry points (`__read_chk`, `__recv_chk`,
//! `__poll_chk`, `__pread_chk`), which glibc implements by calling its own
//! `read` &c. inside libc. They park the coroutine like the plain names:
//! each test runs in a child with one executor, a sibling coroutine
//! supplies the data 100 ms later, and the blocked-executor detector
//! (threshold 60 ms) must not have had to start an executor. Without the
//! hooks the executor blocks in the read and the detector starts one.

#[path = "../../stress/common/mod.rs"]
mod common;

use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use coroutines_thirdparty::fortified;

fn one_executor(name: &str, body: impl FnOnce()) {
    common::in_child(
        "COROUTINES_FORTIFIED_CHILD",
        name,
        &[
            ("COROUTINES_WORKERS", "1"),
            ("COROUTINES_BLOCKED_AFTER", "60ms"),
        ],
        Duration::from_secs(60),
        || {
            body();
            let s = coroutines::stats();
            assert_eq!(
                s.extra_started, 0,
                "an executor blocked in fortified C code: {s:?}"
            );
        },
    );
}

/// A sibling that writes `data` to `w` after 100 ms.
fn write_later(mut w: UnixStream, data: &'static [u8]) -> coroutines::JoinHandle<()> {
    coroutines::spawn(move || {
        coroutines::sleep(Duration::from_millis(100));
        w.write_all(data).unwrap();
    })
}

fn sum(data: &[u8]) -> i64 {
    data.iter().map(|&b| b as i64).sum()
}

#[test]
fn fortified_read_parks() {
    one_executor("fortified_read_parks", || {
        let (r, w) = UnixStream::pair().unwrap();
        let data: &[u8] = b"fortified read";
        let writer = write_later(w, data);
        let fd = r.as_raw_fd();
        let got = coroutines::spawn(move || fortified::read(fd, 64))
            .join()
            .unwrap();
        writer.join().unwrap();
        assert_eq!(got, sum(data));
        drop(r);
    });
}

#[test]
fn fortified_recv_parks() {
    one_executor("fortified_recv_parks", || {
        let (r, w) = UnixStream::pair().unwrap();
        let data: &[u8] = b"fortified recv";
        let writer = write_later(w, data);
        let fd = r.as_raw_fd();
        let got = coroutines::spawn(move || fortified::recv(fd, 64))
            .join()
            .unwrap();
        writer.join().unwrap();
        assert_eq!(got, sum(data));
        drop(r);
    });
}

#[test]
fn fortified_poll_parks() {
    one_executor("fortified_poll_parks", || {
        let (r, w) = UnixStream::pair().unwrap();
        let writer = write_later(w, b"x");
        let fd = r.as_raw_fd();
        // Two entries (the second unused, fd -1): the count is a run-time
        // value, so the C compiler emits the checked form.
        let ready = coroutines::spawn(move || fortified::poll_in(fd, 2, 5_000))
            .join()
            .unwrap();
        writer.join().unwrap();
        assert_eq!(ready, 1, "poll returned {ready}");
        drop(r);
        // With nothing to read (and the other end open), the timeout ends
        // the wait: 0 ready.
        let (r, w) = UnixStream::pair().unwrap();
        let fd = r.as_raw_fd();
        let timed_out = coroutines::spawn(move || fortified::poll_in(fd, 2, 30))
            .join()
            .unwrap();
        assert_eq!(timed_out, 0);
        drop((r, w));
    });
}

/// The positioned read reads the right bytes of a regular file (it runs on
/// a file helper, like `pread`).
#[test]
fn fortified_pread_reads_the_file() {
    let dir = std::env::temp_dir().join(format!("coroutines-fortified-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("data");
    let data: Vec<u8> = (0..200u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(&path, &data).unwrap();
    let f = std::fs::File::open(&path).unwrap();
    let fd = f.as_raw_fd();
    let got = coroutines::spawn(move || fortified::pread(fd, 50, 100))
        .join()
        .unwrap();
    assert_eq!(got, sum(&data[100..150]));
    drop(f);
    let _ = std::fs::remove_dir_all(&dir);
}
