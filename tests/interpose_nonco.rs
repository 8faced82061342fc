//! Hooked calls made outside any coroutine (main thread, plain threads,
//! the test harness's own threads): they must behave exactly like libc's.

use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

#[test]
fn plain_thread_io_and_sleep() {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let t = std::thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        let mut b = [0u8; 4];
        s.read_exact(&mut b).unwrap();
        s.write_all(&b).unwrap();
        s // kept open: the timeout checks below need a silent peer
    });
    let mut c = TcpStream::connect(addr).unwrap();
    c.write_all(b"ping").unwrap();
    let mut b = [0u8; 4];
    c.read_exact(&mut b).unwrap();
    assert_eq!(&b, b"ping");
    let _peer = t.join().unwrap();
    let s = Instant::now();
    std::thread::sleep(Duration::from_millis(20));
    assert!(s.elapsed() >= Duration::from_millis(20));
    // A user-set timeout and non-blocking mode on a plain thread.
    c.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
    let e = c.read(&mut b).unwrap_err();
    assert!(matches!(
        e.kind(),
        ErrorKind::WouldBlock | ErrorKind::TimedOut
    ));
    c.set_nonblocking(true).unwrap();
    assert_eq!(c.read(&mut b).unwrap_err().kind(), ErrorKind::WouldBlock);
    // SAFETY: plain fcntl.
    assert_ne!(
        unsafe { libc::fcntl(c.as_raw_fd(), libc::F_GETFL) } & libc::O_NONBLOCK,
        0
    );
}

/// An fd the runtime made non-blocking (used by a coroutine first) keeps
/// blocking semantics — and its timeout — for a plain thread.
#[test]
fn runtime_nonblocking_fd_blocks_plain_thread() {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let c = TcpStream::connect(addr).unwrap();
    let (s, _) = l.accept().unwrap();
    let s = coroutines::spawn(move || {
        let mut s = s;
        s.set_read_timeout(Some(Duration::from_millis(10))).unwrap();
        let _ = s.read(&mut [0u8; 1]); // registers it; times out
        s.set_read_timeout(None).unwrap();
        s
    })
    .join()
    .unwrap();
    // SAFETY: plain fcntl; the user view is blocking.
    assert_eq!(
        unsafe { libc::fcntl(s.as_raw_fd(), libc::F_GETFL) } & libc::O_NONBLOCK,
        0
    );
    let mut c = c;
    let w = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(100));
        c.write_all(b"late").unwrap();
        c
    });
    let mut s = s;
    let t = Instant::now();
    let mut b = [0u8; 4];
    s.read_exact(&mut b).unwrap();
    assert_eq!(&b, b"late");
    assert!(t.elapsed() >= Duration::from_millis(50));
    let _c = w.join().unwrap();
    s.set_read_timeout(Some(Duration::from_millis(60))).unwrap();
    let t = Instant::now();
    let e = s.read(&mut b).unwrap_err();
    assert!(matches!(
        e.kind(),
        ErrorKind::WouldBlock | ErrorKind::TimedOut
    ));
    assert!(t.elapsed() >= Duration::from_millis(55));
}

/// The pass-through cost of a hook on a plain thread (printed: timing is
/// not asserted). Compares the hooked `read(-1)` with libc's own `read`.
#[test]
fn passthrough_overhead_report() {
    type ReadFn = unsafe extern "C" fn(i32, *mut libc::c_void, usize) -> isize;
    // SAFETY: dlsym with a valid name; libc's read has this signature.
    let real: ReadFn =
        unsafe { std::mem::transmute(libc::dlsym(libc::RTLD_NEXT, c"read".as_ptr())) };
    let n = 200_000;
    let mut b = [0u8; 1];
    let mut best = [f64::MAX; 2];
    for _ in 0..5 {
        let t = Instant::now();
        for _ in 0..n {
            // SAFETY: EBADF; nothing is read.
            unsafe { libc::read(std::hint::black_box(-1), b.as_mut_ptr().cast(), 1) };
        }
        best[0] = best[0].min(t.elapsed().as_nanos() as f64 / n as f64);
        let t = Instant::now();
        for _ in 0..n {
            // SAFETY: as above.
            unsafe { real(std::hint::black_box(-1), b.as_mut_ptr().cast(), 1) };
        }
        best[1] = best[1].min(t.elapsed().as_nanos() as f64 / n as f64);
    }
    println!(
        "read(-1): hooked {:.1} ns, libc {:.1} ns, difference {:.1} ns",
        best[0],
        best[1],
        best[0] - best[1]
    );
}
