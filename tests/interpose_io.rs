//! Focused tests of the I/O hooks: unmodified std::net / std::fs /
//! std::thread::sleep code inside coroutines, its errors and edge cases.

#[path = "../stress/common/mod.rs"]
mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream, ToSocketAddrs, UdpSocket};
use std::os::fd::AsRawFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn pattern(n: usize, seed: u32) -> Vec<u8> {
    (0..n as u32)
        .map(|i| (i.wrapping_mul(2654435761).wrapping_add(seed) >> 13) as u8)
        .collect()
}

#[test]
fn echo_smoke() {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let srv = coroutines::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        let mut buf = [0u8; 1024];
        loop {
            let n = s.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            s.write_all(&buf[..n]).unwrap();
        }
    });
    let cli = coroutines::spawn(move || {
        let mut s = TcpStream::connect(addr).unwrap();
        let data = pattern(300_000, 1);
        let d2 = data.clone();
        let mut r = s.try_clone().unwrap();
        let rd = coroutines::spawn(move || {
            let mut got = vec![0u8; d2.len()];
            r.read_exact(&mut got).unwrap();
            got == d2
        });
        s.write_all(&data).unwrap();
        s.shutdown(Shutdown::Write).unwrap();
        rd.join().unwrap()
    });
    assert!(cli.join().unwrap());
    srv.join().unwrap();
    assert!(coroutines::stats().fds_registered >= 2);
}

/// The seed crate's caveat: a listener bound outside any coroutine and
/// accepted inside one must park the coroutine, not block the executor.
#[test]
fn listener_from_main_accepted_in_coroutine() {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let acc = coroutines::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        let mut b = [0u8; 5];
        s.read_exact(&mut b).unwrap();
        b
    });
    // Many coroutines must keep running while the acceptor waits (even with
    // a single executor busy in accept, these would hang if it blocked).
    std::thread::sleep(Duration::from_millis(50));
    let n = Arc::new(AtomicUsize::new(0));
    let hs: Vec<_> = (0..200)
        .map(|_| {
            let n = n.clone();
            coroutines::spawn(move || {
                std::thread::sleep(Duration::from_millis(5));
                n.fetch_add(1, Ordering::Relaxed);
            })
        })
        .collect();
    for h in hs {
        h.join().unwrap();
    }
    assert_eq!(n.load(Ordering::Relaxed), 200);
    assert!(!acc.is_finished());
    let mut c = TcpStream::connect(addr).unwrap();
    c.write_all(b"hello").unwrap();
    assert_eq!(&acc.join().unwrap(), b"hello");
}

#[test]
fn connection_refused() {
    // Bind then drop to get a port nobody listens on.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let r = coroutines::spawn(move || {
        TcpStream::connect(("127.0.0.1", port))
            .map(|_| ())
            .unwrap_err()
            .kind()
    })
    .join()
    .unwrap();
    assert_eq!(r, ErrorKind::ConnectionRefused);
}

#[test]
fn peer_reset_eof_and_half_close() {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let srv = coroutines::spawn(move || {
        // 1: half-close — the client shuts down writing, we read EOF, then
        // still send a reply the client reads.
        let (mut s, _) = l.accept().unwrap();
        let mut all = Vec::new();
        s.read_to_end(&mut all).unwrap();
        assert_eq!(all, b"request");
        s.write_all(b"reply").unwrap();
        drop(s);
        // 2: reset — SO_LINGER 0 then close sends RST.
        let (s, _) = l.accept().unwrap();
        let lin = libc::linger {
            l_onoff: 1,
            l_linger: 0,
        };
        // SAFETY: valid socket and option buffer.
        unsafe {
            libc::setsockopt(
                s.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_LINGER,
                &lin as *const _ as *const libc::c_void,
                std::mem::size_of::<libc::linger>() as u32,
            )
        };
        drop(s);
    });
    coroutines::spawn(move || {
        let mut c = TcpStream::connect(addr).unwrap();
        c.write_all(b"request").unwrap();
        c.shutdown(Shutdown::Write).unwrap();
        let mut r = Vec::new();
        c.read_to_end(&mut r).unwrap();
        assert_eq!(r, b"reply");
        // EOF again.
        assert_eq!(c.read(&mut [0u8; 8]).unwrap(), 0);
        let mut c = TcpStream::connect(addr).unwrap();
        let mut b = [0u8; 8];
        let e = c.read(&mut b).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::ConnectionReset);
        // Writing to the reset socket: EPIPE/ECONNRESET, never a hang.
        let mut err = None;
        for _ in 0..100 {
            if let Err(e) = c.write_all(&[0u8; 4096]) {
                err = Some(e.kind());
                break;
            }
        }
        assert!(
            matches!(
                err,
                Some(ErrorKind::BrokenPipe | ErrorKind::ConnectionReset)
            ),
            "{err:?}"
        );
    })
    .join()
    .unwrap();
    srv.join().unwrap();
}

#[test]
fn read_and_write_timeouts() {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let keep = coroutines::spawn(move || {
        let (s, _) = l.accept().unwrap();
        std::thread::sleep(Duration::from_millis(600));
        drop(s);
    });
    coroutines::spawn(move || {
        let mut c = TcpStream::connect(addr).unwrap();
        c.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        assert_eq!(c.read_timeout().unwrap(), Some(Duration::from_millis(100)));
        let t = Instant::now();
        let e = c.read(&mut [0u8; 16]).unwrap_err();
        let el = t.elapsed();
        assert!(
            matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
            "{e:?}"
        );
        assert!(
            el >= Duration::from_millis(95) && el < Duration::from_secs(3),
            "{el:?}"
        );
        // Write timeout: the peer never reads; fill the buffers.
        c.set_write_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let buf = vec![7u8; 1 << 20];
        let t = Instant::now();
        let mut res = Ok(());
        for _ in 0..64 {
            res = c.write_all(&buf);
            if res.is_err() {
                break;
            }
        }
        let e = res.unwrap_err();
        assert!(
            matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
            "{e:?}"
        );
        assert!(t.elapsed() < Duration::from_secs(5));
    })
    .join()
    .unwrap();
    keep.join().unwrap();
}

#[test]
fn udp_between_coroutines() {
    let a = UdpSocket::bind("127.0.0.1:0").unwrap();
    let aaddr = a.local_addr().unwrap();
    let srv = coroutines::spawn(move || {
        for _ in 0..50 {
            let mut b = [0u8; 64];
            let (n, from) = a.recv_from(&mut b).unwrap();
            a.send_to(&b[..n], from).unwrap();
        }
    });
    let cli = coroutines::spawn(move || {
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        for i in 0..50u32 {
            s.send_to(&i.to_le_bytes(), aaddr).unwrap();
            let mut b = [0u8; 64];
            let (n, _) = s.recv_from(&mut b).unwrap();
            assert_eq!(&b[..n], &i.to_le_bytes());
        }
    });
    cli.join().unwrap();
    srv.join().unwrap();
}

#[test]
fn unix_domain_sockets() {
    let dir = std::env::temp_dir().join(format!("coroutines-uds-{}", std::process::id()));
    let _ = std::fs::remove_file(&dir);
    let l = UnixListener::bind(&dir).unwrap();
    let path = dir.clone();
    let srv = coroutines::spawn(move || {
        let mut hs = Vec::new();
        for _ in 0..20 {
            let (mut s, _) = l.accept().unwrap();
            hs.push(coroutines::spawn(move || {
                let mut b = Vec::new();
                s.read_to_end(&mut b).unwrap();
                s.write_all(&b).unwrap();
            }));
        }
        for h in hs {
            h.join().unwrap();
        }
    });
    let cls: Vec<_> = (0..20u32)
        .map(|i| {
            let path = path.clone();
            coroutines::spawn(move || {
                let mut s = UnixStream::connect(&path).unwrap();
                let d = pattern(50_000, i);
                s.write_all(&d).unwrap();
                s.shutdown(Shutdown::Write).unwrap();
                let mut b = Vec::new();
                s.read_to_end(&mut b).unwrap();
                assert_eq!(b, d);
            })
        })
        .collect();
    for c in cls {
        c.join().unwrap();
    }
    srv.join().unwrap();
    let _ = std::fs::remove_file(&dir);
}

#[test]
fn pipes_between_coroutines() {
    let (mut r, mut w) = std::io::pipe().unwrap();
    let data = pattern(1 << 20, 9);
    let d2 = data.clone();
    let writer = coroutines::spawn(move || {
        w.write_all(&d2).unwrap();
    });
    let reader = coroutines::spawn(move || {
        let mut got = Vec::new();
        r.read_to_end(&mut got).unwrap();
        got
    });
    writer.join().unwrap();
    assert_eq!(reader.join().unwrap(), data);
}

/// A plain thread and a coroutine use the same socket: the coroutine made
/// it non-blocking under the hood, the thread still blocks as it expects.
#[test]
fn thread_and_coroutine_share_a_socket() {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let srv = coroutines::spawn(move || {
        let (s, _) = l.accept().unwrap();
        tx.send(s.try_clone().unwrap()).unwrap();
        let mut s2 = s;
        // The coroutine reads the first message (fd becomes non-blocking).
        let mut b = [0u8; 3];
        s2.read_exact(&mut b).unwrap();
        assert_eq!(&b, b"one");
        s2
    });
    let mut c = TcpStream::connect(addr).unwrap();
    c.write_all(b"one").unwrap();
    let s_thread = rx.recv().unwrap();
    let _s_co = srv.join().unwrap();
    // Plain thread: the read must block until data arrives, not EAGAIN.
    let t = std::thread::spawn(move || {
        let mut s = s_thread;
        assert!(s.set_nonblocking(false).is_ok());
        let mut b = [0u8; 3];
        s.read_exact(&mut b).unwrap();
        b
    });
    std::thread::sleep(Duration::from_millis(100));
    c.write_all(b"two").unwrap();
    assert_eq!(&t.join().unwrap(), b"two");
}

/// The user's own O_NONBLOCK view: fcntl reports it, and a user-set
/// non-blocking socket gets EAGAIN (WouldBlock) inside a coroutine.
#[test]
fn user_nonblocking_view() {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    coroutines::spawn(move || {
        let c = TcpStream::connect(addr).unwrap();
        let (mut s, _) = l.accept().unwrap();
        let fd = s.as_raw_fd();
        // SAFETY: plain fcntl on a valid fd.
        let fl = unsafe { libc::fcntl(fd, libc::F_GETFL) };
        assert_eq!(fl & libc::O_NONBLOCK, 0, "user view must stay blocking");
        s.set_nonblocking(true).unwrap();
        assert_eq!(
            s.read(&mut [0u8; 4]).unwrap_err().kind(),
            ErrorKind::WouldBlock
        );
        s.set_nonblocking(false).unwrap();
        drop(c);
        assert_eq!(s.read(&mut [0u8; 4]).unwrap(), 0);
    })
    .join()
    .unwrap();
}

/// Closing an fd another coroutine waits on wakes it with EBADF.
#[test]
fn close_wakes_waiter() {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let _c = TcpStream::connect(addr).unwrap();
    let (s, _) = l.accept().unwrap();
    let fd = s.as_raw_fd();
    std::mem::forget(s); // closed by hand below
    let waiter = coroutines::spawn(move || {
        let mut b = [0u8; 4];
        // SAFETY: reading into a live buffer.
        let r = unsafe { libc::read(fd, b.as_mut_ptr().cast(), 4) };
        (r, std::io::Error::last_os_error().raw_os_error())
    });
    std::thread::sleep(Duration::from_millis(100));
    // SAFETY: we own the fd (forgotten above).
    unsafe { libc::close(fd) };
    let (r, e) = waiter.join().unwrap();
    assert_eq!(r, -1);
    assert_eq!(e, Some(libc::EBADF));
}

#[test]
fn sleep_hooks_park() {
    let t = Instant::now();
    let hs: Vec<_> = (0..1000)
        .map(|i| {
            coroutines::spawn(move || match i % 4 {
                0 => std::thread::sleep(Duration::from_millis(100)),
                // SAFETY: plain libc sleep calls.
                1 => unsafe {
                    libc::usleep(100_000);
                },
                2 => {
                    let ts = libc::timespec {
                        tv_sec: 0,
                        tv_nsec: 100_000_000,
                    };
                    // SAFETY: valid timespec.
                    unsafe { libc::nanosleep(&ts, std::ptr::null_mut()) };
                }
                _ => {
                    let mut now = libc::timespec {
                        tv_sec: 0,
                        tv_nsec: 0,
                    };
                    // SAFETY: valid pointers.
                    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
                    now.tv_nsec += 100_000_000;
                    if now.tv_nsec >= 1_000_000_000 {
                        now.tv_sec += 1;
                        now.tv_nsec -= 1_000_000_000;
                    }
                    // SAFETY: valid pointers.
                    let r = unsafe {
                        libc::clock_nanosleep(
                            libc::CLOCK_MONOTONIC,
                            libc::TIMER_ABSTIME,
                            &now,
                            std::ptr::null_mut(),
                        )
                    };
                    assert_eq!(r, 0);
                }
            })
        })
        .collect();
    for h in hs {
        h.join().unwrap();
    }
    let el = t.elapsed();
    assert!(
        el >= Duration::from_millis(100) && el < Duration::from_secs(5),
        "{el:?}"
    );
    assert!(coroutines::stats().sleep_parks >= 1000);
}

/// 1 ms sleeps in a coroutine: lateness figures (printed, not asserted
/// beyond a generous bound).
#[test]
fn sleep_accuracy() {
    let mut late: Vec<Duration> = coroutines::spawn(|| {
        (0..200)
            .map(|_| {
                let t = Instant::now();
                std::thread::sleep(Duration::from_millis(1));
                t.elapsed() - Duration::from_millis(1)
            })
            .collect()
    })
    .join()
    .unwrap();
    late.sort();
    let p50 = late[100];
    let p99 = late[198];
    println!(
        "sleep(1ms) lateness in a coroutine: p50 {p50:?} p99 {p99:?} max {:?}",
        late[199]
    );
    assert!(p50 < Duration::from_millis(50));
}

/// getaddrinfo("localhost") from 100 coroutines runs on helper threads
/// and the calls overlap.
#[test]
fn getaddrinfo_from_many_coroutines() {
    let before = coroutines::stats().offloaded;
    let hs: Vec<_> = (0..100)
        .map(|_| {
            coroutines::spawn(|| {
                ("localhost", 80)
                    .to_socket_addrs()
                    .map(|a| a.count())
                    .unwrap_or(0)
            })
        })
        .collect();
    for h in hs {
        assert!(h.join().unwrap() >= 1);
    }
    assert!(coroutines::stats().offloaded >= before + 100);
}

#[test]
fn regular_files() {
    let path = std::env::temp_dir().join(format!("coroutines-file-{}", std::process::id()));
    let data = pattern(3 << 20, 5);
    let d2 = data.clone();
    let p2 = path.clone();
    coroutines::spawn(move || {
        std::fs::write(&p2, &d2).unwrap();
        let got = std::fs::read(&p2).unwrap();
        assert_eq!(got, d2);
        use std::os::unix::fs::FileExt;
        let f = std::fs::File::open(&p2).unwrap();
        let mut b = [0u8; 100];
        f.read_exact_at(&mut b, 1000).unwrap();
        assert_eq!(&b[..], &d2[1000..1100]);
    })
    .join()
    .unwrap();
    let _ = std::fs::remove_file(&path);
}

/// poll(2) from a coroutine on a socket parks until it is readable.
#[test]
fn poll_in_coroutine() {
    let (a, mut b) = UnixStream::pair().unwrap();
    let h = coroutines::spawn(move || {
        let mut p = libc::pollfd {
            fd: a.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        let t = unsafe { libc::poll(&mut p, 1, 50) };
        assert_eq!(t, 0, "timed out with nothing to read");
        // SAFETY: as above.
        let r = unsafe { libc::poll(&mut p, 1, 5000) };
        (r, p.revents & libc::POLLIN != 0)
    });
    std::thread::sleep(Duration::from_millis(150));
    b.write_all(b"x").unwrap();
    assert_eq!(h.join().unwrap(), (1, true));
}

/// A short read followed by end of stream: the read after the short one
/// must see EOF whether the FIN arrived before the short read (its edge
/// already counted) or after it (a new edge).
#[test]
fn short_read_then_eof_both_orders() {
    for fin_first in [true, false] {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let srv = coroutines::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            if fin_first {
                coroutines::sleep(Duration::from_millis(30)); // data and FIN are in
            }
            let mut got = Vec::new();
            let mut buf = [0u8; 64];
            loop {
                let n = s.read(&mut buf).unwrap(); // short reads: 10 < 64
                if n == 0 {
                    break;
                }
                got.extend_from_slice(&buf[..n]);
            }
            got
        });
        let cl = coroutines::spawn(move || {
            let mut c = TcpStream::connect(addr).unwrap();
            c.write_all(b"0123456789").unwrap();
            if !fin_first {
                coroutines::sleep(Duration::from_millis(30)); // the server read it short
                c.write_all(b"abc").unwrap();
                coroutines::sleep(Duration::from_millis(10));
            }
            c.shutdown(Shutdown::Write).unwrap();
        });
        cl.join().unwrap();
        let want: &[u8] = if fin_first {
            b"0123456789"
        } else {
            b"0123456789abc"
        };
        assert_eq!(srv.join().unwrap(), want, "fin_first={fin_first}");
    }
}

/// `std::io::copy` from a file to a socket and from a child's stdout pipe
/// to a socket (std moves the bytes with `splice` when a side is a pipe),
/// in a coroutine whose socket and pipe the runtime made non-blocking: the
/// copies must wait like the blocking calls, not fail with `WouldBlock`.
#[test]
fn io_copy_sendfile_and_splice() {
    use std::process::{Command, Stdio};
    let (path, data) = copy_source("a");
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let p2 = path.clone();
    // Server: reads a one-byte request (the socket becomes non-blocking),
    // answers with the whole file through io::copy (sendfile), then a
    // child's output through io::copy (splice from its stdout pipe).
    let srv = coroutines::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        small_buffers(&s);
        let mut req = [0u8; 1];
        s.read_exact(&mut req).unwrap();
        let mut f = std::fs::File::open(&p2).unwrap();
        let n = std::io::copy(&mut f, &mut s).unwrap();
        let mut child = Command::new("cat")
            .arg(&p2)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut out = child.stdout.take().unwrap();
        let mut b = [0u8; 1];
        out.read_exact(&mut b).unwrap(); // the pipe becomes non-blocking
        s.write_all(&b).unwrap();
        let m = std::io::copy(&mut out, &mut s).unwrap();
        assert!(child.wait().unwrap().success());
        (n, m + 1)
    });
    let want = data.clone();
    let cli = coroutines::spawn(move || {
        let mut s = TcpStream::connect(addr).unwrap();
        small_buffers(&s);
        s.write_all(b"?").unwrap();
        // Let the server fill the socket buffer before reading.
        std::thread::sleep(Duration::from_millis(50));
        let mut got = vec![0u8; want.len()];
        s.read_exact(&mut got).unwrap();
        assert!(got == want, "file bytes differ");
        s.read_exact(&mut got).unwrap();
        assert!(got == want, "piped bytes differ");
    });
    assert_eq!(srv.join().unwrap(), (data.len() as u64, data.len() as u64));
    cli.join().unwrap();
    let _ = std::fs::remove_file(&path);
}

/// Shrinks a socket's kernel buffers (64 KiB) so that a copy of a few MiB
/// fills them whatever the machine's defaults.
fn small_buffers(s: &TcpStream) {
    for opt in [libc::SO_SNDBUF, libc::SO_RCVBUF] {
        let v: libc::c_int = 64 << 10;
        // SAFETY: setsockopt reads one c_int from a live local.
        let r = unsafe {
            libc::setsockopt(
                s.as_raw_fd(),
                libc::SOL_SOCKET,
                opt,
                &v as *const libc::c_int as *const libc::c_void,
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        assert_eq!(r, 0);
    }
}

/// A 4 MiB file to copy: its path and bytes.
fn copy_source(tag: &str) -> (std::path::PathBuf, Vec<u8>) {
    let path = std::env::temp_dir().join(format!("coroutines-copy-{tag}-{}", std::process::id()));
    let data = pattern(4 << 20, 9);
    std::fs::write(&path, &data).unwrap();
    (path, data)
}

/// `std::io::copy` from a socket into a child's stdin pipe (`splice`), in
/// a coroutine whose socket and pipe the runtime made non-blocking.
#[test]
fn io_copy_socket_to_pipe_splice() {
    use std::process::{Command, Stdio};
    let (path, data) = copy_source("b");
    let _ = std::fs::remove_file(&path);
    // Socket into a child's stdin (splice socket -> pipe), the child's
    // stdout read back by a sibling coroutine.
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let want = data.clone();
    let sink = coroutines::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        let mut child = Command::new("cat")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        let mut stdout = child.stdout.take().unwrap();
        let reader = coroutines::spawn(move || {
            let mut v = Vec::new();
            stdout.read_to_end(&mut v).unwrap();
            v
        });
        stdin.write_all(&[]).unwrap();
        let mut b = [0u8; 1];
        s.read_exact(&mut b).unwrap(); // the socket becomes non-blocking
        stdin.write_all(&b).unwrap(); // so does the pipe
        let n = std::io::copy(&mut s, &mut stdin).unwrap();
        drop(stdin);
        let v = reader.join().unwrap();
        assert!(child.wait().unwrap().success());
        (n + 1, v == want)
    });
    let d2 = data.clone();
    let src = coroutines::spawn(move || {
        let mut s = TcpStream::connect(addr).unwrap();
        for c in d2.chunks(100_000) {
            s.write_all(c).unwrap();
            std::thread::sleep(Duration::from_millis(2));
        }
    });
    src.join().unwrap();
    assert_eq!(sink.join().unwrap(), (data.len() as u64, true));
}

/// `sendfile(2)` called directly (as a file server's C or `libc` code does)
/// from a file into a child's stdin pipe (the kernel honours the pipe's
/// O_NONBLOCK there), once from a coroutine and once from a plain thread,
/// after a coroutine made the pipe non-blocking; a sibling coroutine reads
/// the child's stdout back. Then `std::io::copy` of the same (std picks
/// its own kernel copy).
#[test]
fn sendfile_and_io_copy_file_to_pipe() {
    use std::process::{Command, Stdio};
    let (path, data) = copy_source("c");
    for from_thread in [false, true] {
        let mut child = Command::new("cat")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        let mut stdout = child.stdout.take().unwrap();
        let reader = coroutines::spawn(move || {
            // Let the copy fill the pipe first.
            std::thread::sleep(Duration::from_millis(50));
            let mut v = Vec::new();
            stdout.read_to_end(&mut v).unwrap();
            v
        });
        // A coroutine writes the first byte: the pipe becomes non-blocking
        // (the runtime's doing; the user's view stays blocking).
        let first = data[0];
        let mut stdin = coroutines::spawn(move || {
            stdin.write_all(&[first]).unwrap();
            stdin
        })
        .join()
        .unwrap();
        let p2 = path.clone();
        let copy = move || {
            let mut f = std::fs::File::open(&p2).unwrap();
            let mut b = [0u8; 1];
            f.read_exact(&mut b).unwrap();
            let len = f.metadata().unwrap().len() as usize;
            let mut done = 1;
            // Half by sendfile in a loop as C code writes it (a blocking
            // call sends all it is asked unless interrupted)...
            while done < len / 2 {
                // SAFETY: two open fds; a null offset uses the position.
                let r = unsafe {
                    libc::sendfile(
                        stdin.as_raw_fd(),
                        f.as_raw_fd(),
                        std::ptr::null_mut(),
                        len / 2 - done,
                    )
                };
                assert!(r > 0, "sendfile: {}", std::io::Error::last_os_error());
                done += r as usize;
            }
            // ...the rest by std.
            std::io::copy(&mut f, &mut stdin).unwrap() + done as u64
        };
        let n = if from_thread {
            std::thread::spawn(copy).join().unwrap()
        } else {
            coroutines::spawn(copy).join().unwrap()
        };
        assert_eq!(n, data.len() as u64, "from_thread={from_thread}");
        assert!(reader.join().unwrap() == data, "from_thread={from_thread}");
        assert!(child.wait().unwrap().success());
    }
    let _ = std::fs::remove_file(&path);
}

/// `recv(MSG_WAITALL)` (C code and socket2 users wait for a whole record
/// this way) on a socket the runtime made non-blocking, from a coroutine
/// and from a plain thread: all the bytes asked for, not what had arrived.
#[test]
fn recv_waitall_gets_everything() {
    for from_thread in [false, true] {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let data = pattern(200_000, 3);
        let d2 = data.clone();
        let sender = coroutines::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            for c in d2.chunks(20_000) {
                s.write_all(c).unwrap();
                std::thread::sleep(Duration::from_millis(3));
            }
            s
        });
        let s = TcpStream::connect(addr).unwrap();
        // A coroutine's first read makes the socket non-blocking.
        let s = coroutines::spawn(move || {
            let mut s = s;
            let mut b = [0u8; 1];
            s.read_exact(&mut b).unwrap();
            (s, b[0])
        })
        .join()
        .unwrap();
        let want = data.clone();
        let recv_all = move || {
            let (s, first) = s;
            let mut buf = vec![0u8; want.len() - 1];
            // SAFETY: a live socket and a buffer of `buf.len()` bytes.
            let r = unsafe {
                libc::recv(
                    s.as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    libc::MSG_WAITALL,
                )
            };
            (r, first == want[0] && buf[..] == want[1..])
        };
        let (r, same) = if from_thread {
            std::thread::spawn(recv_all).join().unwrap()
        } else {
            coroutines::spawn(recv_all).join().unwrap()
        };
        assert_eq!(r, data.len() as isize - 1, "from_thread={from_thread}");
        assert!(same, "from_thread={from_thread}");
        drop(sender.join().unwrap());
    }
}

/// An fd passed with SCM_RIGHTS inside the process is a new number for a
/// description the runtime made non-blocking (a coroutine used the
/// socket): it must keep blocking semantics. Before, the receiver's
/// blocking reads failed with WouldBlock.
#[test]
fn fd_passed_in_process_keeps_blocking_reads() {
    use std::os::fd::FromRawFd;
    let h = coroutines::spawn(|| {
        let (ctl_a, ctl_b) = UnixStream::pair().unwrap();
        let (mut x, mut y) = UnixStream::pair().unwrap();
        // A coroutine's use of `x` makes its description non-blocking.
        y.write_all(b"warm").unwrap();
        let mut warm = [0u8; 4];
        x.read_exact(&mut warm).unwrap();
        let receiver = coroutines::spawn(move || {
            let fd = common::recv_fd(&ctl_b);
            // SAFETY: a fresh fd we own.
            let mut got = unsafe { UnixStream::from_raw_fd(fd) };
            let t = Instant::now();
            let mut buf = [0u8; 5];
            got.read_exact(&mut buf).map(|_| (buf, t.elapsed()))
        });
        common::send_fd(&ctl_a, x.as_raw_fd());
        drop(x); // the receiver's number is the only one left
        std::thread::sleep(Duration::from_millis(50));
        y.write_all(b"hello").unwrap();
        receiver.join().unwrap()
    });
    let (buf, waited) = h.join().unwrap().expect("blocking read on the passed fd");
    assert_eq!(&buf, b"hello");
    assert!(waited >= Duration::from_millis(20), "{waited:?}");
}

/// The sender of an in-process hand-off closes its number right after
/// `sendmsg` while the receiver, on another executor, takes the fd and
/// reads it with blocking semantics: the receiver must never depend on the
/// sender's number still being open. Before, a close landing between the
/// receiver's inode check and its look at the sender's entry left the new
/// number unmanaged, and its blocking read failed with WouldBlock (seen
/// once in CI, in the crates3 hand-off scenario).
#[test]
fn fd_passed_and_closed_at_once_keeps_blocking_reads() {
    use std::os::fd::FromRawFd;
    const N: usize = 400;
    let (ctl_a, ctl_b) = UnixStream::pair().unwrap();
    let (ack_a, mut ack_b) = UnixStream::pair().unwrap();
    let receiver = coroutines::spawn(move || {
        let mut ack_a = ack_a;
        let mut failed = Vec::new();
        for i in 0..N {
            let fd = common::recv_fd(&ctl_b);
            // SAFETY: a fresh fd we own.
            let mut got = unsafe { UnixStream::from_raw_fd(fd) };
            ack_a.write_all(b"r").unwrap();
            let mut buf = [0u8; 5];
            if let Err(e) = got.read_exact(&mut buf) {
                failed.push((i, e.kind()));
            }
        }
        failed
    });
    let sender = coroutines::spawn(move || {
        for i in 0..N {
            let (mut x, mut y) = UnixStream::pair().unwrap();
            // A coroutine's use of `x` makes its description non-blocking.
            y.write_all(b"warm").unwrap();
            let mut warm = [0u8; 4];
            x.read_exact(&mut warm).unwrap();
            common::send_fd(&ctl_a, x.as_raw_fd());
            // Close after a varying delay, sweeping over the receiver's
            // wake-up and bookkeeping.
            let until = Instant::now() + Duration::from_nanos((i as u64 % 40) * 500);
            while Instant::now() < until {
                std::hint::spin_loop();
            }
            drop(x);
            let mut a = [0u8; 1];
            ack_b.read_exact(&mut a).unwrap();
            std::thread::sleep(Duration::from_micros(300));
            let _ = y.write_all(b"hello"); // EPIPE if the read failed
        }
    });
    sender.join().unwrap();
    let failed = receiver.join().unwrap();
    assert!(
        failed.is_empty(),
        "{} of {N} blocking reads failed: {:?}",
        failed.len(),
        &failed[..failed.len().min(5)]
    );
}
