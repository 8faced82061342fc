//! Foreign event loops, helper threads and sockets shared with plain
//! threads (issue 10, pieces 4, 6 and 7):
//! - `epoll_wait`/`poll`/`select` families park on the reactor: 50 tokio
//!   current-thread runtimes waiting at once add no OS thread, and the
//!   calls keep their return values, result sets and timeouts;
//! - `/proc` reads run inline; cold regular-file reads use a capped pool;
//! - a tiny_http server (its own thread reads each connection) answering
//!   from one coroutine per request serves every keep-alive request.
//!
//! Each test runs in a child process (the runtime is global per process)
//! with 2 executors and a watchdog: a hang fails the test.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const CHILD: &str = "COROUTINES_FOREIGN_IO_CHILD";
const TWO: &[(&str, &str)] = &[("COROUTINES_WORKERS", "2")];

fn in_child(name: &str, env: &[(&str, &str)], body: impl FnOnce()) {
    common::in_child(CHILD, name, env, Duration::from_secs(120), body)
}

/// OS threads of this process now, and their names.
fn threads() -> (usize, Vec<String>) {
    let mut names = Vec::new();
    for e in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        let comm = std::fs::read_to_string(e.path().join("comm")).unwrap_or_default();
        names.push(comm.trim().to_string());
    }
    (names.len(), names)
}

/// Samples the thread count until `stop`, from a coroutine (parked on a
/// reactor timer between samples: it adds no OS thread); returns the
/// largest count seen and the names at that moment.
fn sample_threads(stop: Arc<AtomicBool>) -> coroutines::JoinHandle<(usize, Vec<String>)> {
    coroutines::spawn(move || {
        let mut max = (0, Vec::new());
        while !stop.load(Ordering::SeqCst) {
            let t = threads();
            if t.0 > max.0 {
                max = t;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        max
    })
}

/// 50 coroutines, each blocked in its own `epoll_wait` through a tokio
/// current-thread runtime (a `tokio::time::sleep`, then a tokio TCP read
/// that the server answers late), on 2 executors. While they wait, the
/// process has at most executors + 4 OS threads: the test harness's main
/// thread, its test thread and the runtime's monitor (+1 spare; an extra
/// executor the blocked-executor detector may start on a busy machine
/// counts as an executor). Before the reactor handled foreign epoll fds each
/// waiting coroutine held a helper thread (54 threads).
#[test]
fn epoll_wait_in_50_tokio_runtimes_adds_no_threads() {
    in_child(
        "epoll_wait_in_50_tokio_runtimes_adds_no_threads",
        TWO,
        || {
            use std::io::{Read, Write};
            const N: usize = 50;
            coroutines::spawn(|| ()).join().unwrap(); // start the runtime
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = listener.local_addr().unwrap();
            let waiting = Arc::new(AtomicUsize::new(0));
            let release = Arc::new(AtomicBool::new(false));
            let server = {
                let (waiting, release) = (waiting.clone(), release.clone());
                coroutines::spawn(move || {
                    let mut conns = Vec::new();
                    for _ in 0..N {
                        let (s, _) = listener.accept().unwrap();
                        conns.push(s);
                    }
                    // Answer only once every client sits in its read (and the
                    // sampler has looked at the thread count for a while).
                    while waiting.load(Ordering::SeqCst) < N || !release.load(Ordering::SeqCst) {
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    for (k, s) in conns.iter_mut().enumerate() {
                        let mut id = [0u8; 4];
                        s.read_exact(&mut id).unwrap();
                        let i = u32::from_le_bytes(id);
                        s.write_all(format!("reply {i} {k};").as_bytes()).unwrap();
                    }
                })
            };
            let stop = Arc::new(AtomicBool::new(false));
            let sampler = sample_threads(stop.clone());
            let clients: Vec<_> = (0..N as u32)
                .map(|i| {
                    let waiting = waiting.clone();
                    coroutines::spawn(move || {
                        let rt = tokio::runtime::Builder::new_current_thread()
                            .enable_all()
                            .build()
                            .unwrap();
                        rt.block_on(async move {
                            use tokio::io::{AsyncReadExt, AsyncWriteExt};
                            let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
                            let t0 = Instant::now();
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            assert!(t0.elapsed() >= Duration::from_millis(100));
                            s.write_all(&i.to_le_bytes()).await.unwrap();
                            waiting.fetch_add(1, Ordering::SeqCst);
                            let mut buf = Vec::new();
                            let mut chunk = [0u8; 64];
                            while !buf.ends_with(b";") {
                                let n = s.read(&mut chunk).await.unwrap();
                                assert!(n > 0, "early EOF");
                                buf.extend_from_slice(&chunk[..n]);
                            }
                            String::from_utf8(buf).unwrap()
                        })
                    })
                })
                .collect();
            // Let them all wait, then look for a while before releasing.
            let t0 = Instant::now();
            while waiting.load(Ordering::SeqCst) < N {
                assert!(
                    t0.elapsed() < Duration::from_secs(60),
                    "clients never got to wait"
                );
                std::thread::sleep(Duration::from_millis(5));
            }
            std::thread::sleep(Duration::from_millis(300));
            release.store(true, Ordering::SeqCst);
            for (i, h) in clients.into_iter().enumerate() {
                let reply = h.join().expect("client panicked");
                assert!(
                    reply.starts_with(&format!("reply {i} ")),
                    "client {i} got {reply:?}"
                );
            }
            server.join().unwrap();
            stop.store(true, Ordering::SeqCst);
            let (max, names) = sampler.join().unwrap();
            let s = coroutines::stats();
            eprintln!(
            "max OS threads {max} with {} executors: {names:?}; stats: other_helpers_peak {} offloaded {} extra_started {}",
            s.workers, s.other_helpers_peak, s.offloaded, s.extra_started
        );
            let executors = 2 + s.extra_started as usize;
            assert!(
            max <= executors + 4,
            "{max} OS threads while 50 coroutines waited in epoll_wait ({executors} executors): {names:?}"
        );
            assert_eq!(
                s.other_helpers_peak, 0,
                "a poll-family call used a helper thread"
            );
        },
    );
}

fn pipe() -> (i32, i32) {
    let mut fds = [0i32; 2];
    // SAFETY: room for two ints.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    (fds[0], fds[1])
}

fn write_byte(fd: i32) {
    // SAFETY: one byte from a live buffer.
    assert_eq!(unsafe { libc::write(fd, b"x".as_ptr().cast(), 1) }, 1);
}

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// Return values, result sets, errno and timeouts of the poll family in
/// coroutines, over the user's epoll fd, an eventfd, pipes: woken by a
/// sibling coroutine or a plain thread, timing out no earlier than asked,
/// and no helper thread used.
#[test]
fn poll_family_semantics_in_coroutines() {
    in_child("poll_family_semantics_in_coroutines", TWO, || {
        let h = coroutines::spawn(|| {
            // epoll_wait on the user's epoll fd: a timeout returns 0 after
            // at least the timeout.
            // SAFETY: plain libc calls on fds this test owns, with live
            // buffers of the stated sizes (the whole block).
            unsafe {
                let ep = libc::epoll_create1(libc::EPOLL_CLOEXEC);
                assert!(ep >= 0);
                let (r, w) = pipe();
                let mut ev = libc::epoll_event {
                    events: libc::EPOLLIN as u32,
                    u64: 7,
                };
                assert_eq!(libc::epoll_ctl(ep, libc::EPOLL_CTL_ADD, r, &mut ev), 0);
                let mut out = [libc::epoll_event { events: 0, u64: 0 }; 4];
                let t0 = Instant::now();
                assert_eq!(libc::epoll_wait(ep, out.as_mut_ptr(), 4, 80), 0);
                assert!(t0.elapsed() >= Duration::from_millis(80));
                // Woken by a sibling coroutine's write.
                let writer = coroutines::spawn(move || {
                    std::thread::sleep(Duration::from_millis(30));
                    write_byte(w);
                });
                let n = libc::epoll_wait(ep, out.as_mut_ptr(), 4, -1);
                assert_eq!(n, 1);
                let data = out[0].u64;
                assert_eq!(data, 7);
                writer.join().unwrap();
                // epoll_pwait (empty mask) and epoll_pwait2 see it too
                // (level-triggered, still unread).
                let mut mask: libc::sigset_t = std::mem::zeroed();
                libc::sigemptyset(&mut mask);
                assert_eq!(libc::epoll_pwait(ep, out.as_mut_ptr(), 4, 1000, &mask), 1);
                let ts = libc::timespec {
                    tv_sec: 1,
                    tv_nsec: 0,
                };
                assert_eq!(libc::epoll_pwait2(ep, out.as_mut_ptr(), 4, &ts, &mask), 1);
                let mut b = [0u8; 1];
                assert_eq!(libc::read(r, b.as_mut_ptr().cast(), 1), 1);
                // Drained: epoll_pwait2 times out.
                let ts = libc::timespec {
                    tv_sec: 0,
                    tv_nsec: 50_000_000,
                };
                let t0 = Instant::now();
                assert_eq!(libc::epoll_pwait2(ep, out.as_mut_ptr(), 4, &ts, &mask), 0);
                assert!(t0.elapsed() >= Duration::from_millis(50));
                // Bad arguments: the kernel's errno.
                assert_eq!(libc::epoll_wait(ep, out.as_mut_ptr(), 0, 100), -1);
                assert_eq!(errno(), libc::EINVAL);
                assert_eq!(libc::epoll_wait(r, out.as_mut_ptr(), 4, 100), -1);
                assert_eq!(errno(), libc::EINVAL);

                // poll on an eventfd woken by a plain thread.
                let efd = libc::eventfd(0, libc::EFD_CLOEXEC);
                assert!(efd >= 0);
                let t = std::thread::spawn(move || {
                    std::thread::sleep(Duration::from_millis(30));
                    let one: u64 = 1;
                    libc::write(efd, (&one as *const u64).cast(), 8);
                });
                let mut p = [
                    libc::pollfd {
                        fd: efd,
                        events: libc::POLLIN,
                        revents: 0,
                    },
                    libc::pollfd {
                        fd: -1,
                        events: libc::POLLIN,
                        revents: 0,
                    },
                ];
                assert_eq!(libc::poll(p.as_mut_ptr(), 2, 10_000), 1);
                assert_eq!(p[0].revents, libc::POLLIN);
                t.join().unwrap();
                // ppoll with a mask and a timeout: 0 after the timeout on
                // a pipe nobody writes.
                let (r2, w2) = pipe();
                let mut p = [libc::pollfd {
                    fd: r2,
                    events: libc::POLLIN,
                    revents: 0,
                }];
                let ts = libc::timespec {
                    tv_sec: 0,
                    tv_nsec: 40_000_000,
                };
                let t0 = Instant::now();
                assert_eq!(libc::ppoll(p.as_mut_ptr(), 1, &ts, &mask), 0);
                assert!(t0.elapsed() >= Duration::from_millis(40));
                // A closed fd: POLLNVAL at once.
                let mut p = [libc::pollfd {
                    fd: 1000,
                    events: libc::POLLIN,
                    revents: 0,
                }];
                assert_eq!(libc::poll(p.as_mut_ptr(), 1, 10_000), 1);
                assert_eq!(p[0].revents, libc::POLLNVAL);

                // select: timeout clears the set and writes back 0 left.
                let mut set: libc::fd_set = std::mem::zeroed();
                libc::FD_ZERO(&mut set);
                libc::FD_SET(r2, &mut set);
                let mut tv = libc::timeval {
                    tv_sec: 0,
                    tv_usec: 40_000,
                };
                let t0 = Instant::now();
                let n = libc::select(
                    r2 + 1,
                    &mut set,
                    std::ptr::null_mut(),
                    std::ptr::null_mut(),
                    &mut tv,
                );
                assert_eq!(n, 0);
                assert!(t0.elapsed() >= Duration::from_millis(40));
                assert!(!libc::FD_ISSET(r2, &set));
                assert_eq!((tv.tv_sec, tv.tv_usec), (0, 0));
                // select woken by a sibling: the set keeps only the ready fd.
                let writer = coroutines::spawn(move || {
                    std::thread::sleep(Duration::from_millis(30));
                    write_byte(w2);
                });
                let (r3, _w3) = pipe();
                libc::FD_ZERO(&mut set);
                libc::FD_SET(r2, &mut set);
                libc::FD_SET(r3, &mut set);
                let n = libc::select(
                    r2.max(r3) + 1,
                    &mut set,
                    std::ptr::null_mut(),
                    std::ptr::null_mut(),
                    std::ptr::null_mut(),
                );
                assert_eq!(n, 1);
                assert!(libc::FD_ISSET(r2, &set) && !libc::FD_ISSET(r3, &set));
                writer.join().unwrap();
                // pselect: ready at once (byte unread), then a timeout.
                libc::FD_ZERO(&mut set);
                libc::FD_SET(r2, &mut set);
                let ts = libc::timespec {
                    tv_sec: 5,
                    tv_nsec: 0,
                };
                let n = libc::pselect(
                    r2 + 1,
                    &mut set,
                    std::ptr::null_mut(),
                    std::ptr::null_mut(),
                    &ts,
                    &mask,
                );
                assert_eq!(n, 1);
                assert_eq!(libc::read(r2, b.as_mut_ptr().cast(), 1), 1);
                libc::FD_ZERO(&mut set);
                libc::FD_SET(r2, &mut set);
                let ts = libc::timespec {
                    tv_sec: 0,
                    tv_nsec: 30_000_000,
                };
                let t0 = Instant::now();
                let n = libc::pselect(
                    r2 + 1,
                    &mut set,
                    std::ptr::null_mut(),
                    std::ptr::null_mut(),
                    &ts,
                    &mask,
                );
                assert_eq!(n, 0);
                assert!(t0.elapsed() >= Duration::from_millis(30));
                for fd in [ep, r, w, efd, r2, w2, r3, _w3] {
                    libc::close(fd);
                }
            }
        });
        h.join().unwrap();
        let s = coroutines::stats();
        assert_eq!(s.other_helpers_peak, 0, "a poll-family call used a helper");
    });
}

/// 2,000 coroutines reading `/proc/self/status` at once: inline (procfs
/// never waits for a disk), no helper thread.
#[test]
fn proc_reads_run_inline() {
    in_child("proc_reads_run_inline", TWO, || {
        let barrier = Arc::new(std::sync::Barrier::new(2000));
        let hs: Vec<_> = (0..2000)
            .map(|_| {
                let b = barrier.clone();
                coroutines::spawn(move || {
                    b.wait();
                    let s = std::fs::read_to_string("/proc/self/status").unwrap();
                    assert!(s.contains("Threads:"));
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
        let s = coroutines::stats();
        assert_eq!(s.file_helpers_peak, 0, "a /proc read started a helper");
        assert_eq!(s.other_helpers_peak, 0);
    });
}

/// 200 coroutines reading cold regular files at once (page cache dropped
/// with POSIX_FADV_DONTNEED): every byte right, and never more helper
/// threads than the cap (`COROUTINES_FILE_HELPERS=4` here).
#[test]
fn cold_file_reads_use_a_capped_pool() {
    in_child(
        "cold_file_reads_use_a_capped_pool",
        &[
            ("COROUTINES_WORKERS", "2"),
            ("COROUTINES_FILE_HELPERS", "4"),
        ],
        || {
            use std::os::fd::AsRawFd;
            const FILES: usize = 200;
            const SIZE: usize = 128 * 1024;
            let dir = std::env::temp_dir().join(format!("coroutines-cold-{}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            let content = |i: usize| -> Vec<u8> {
                (0..SIZE)
                    .map(|k| (k.wrapping_mul(31) ^ i.wrapping_mul(7919)) as u8)
                    .collect()
            };
            for i in 0..FILES {
                let p = dir.join(format!("f{i}"));
                std::fs::write(&p, content(i)).unwrap();
                let f = std::fs::File::open(&p).unwrap();
                f.sync_all().unwrap();
                // SAFETY: advice on an open fd.
                unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
            }
            let barrier = Arc::new(std::sync::Barrier::new(FILES));
            let hs: Vec<_> = (0..FILES)
                .map(|i| {
                    let (b, p) = (barrier.clone(), dir.join(format!("f{i}")));
                    coroutines::spawn(move || {
                        b.wait();
                        std::fs::read(p).unwrap()
                    })
                })
                .collect();
            for (i, h) in hs.into_iter().enumerate() {
                assert!(h.join().unwrap() == content(i), "file {i} read wrong");
            }
            std::fs::remove_dir_all(&dir).unwrap();
            let s = coroutines::stats();
            eprintln!(
                "offloaded {} file_helpers_peak {}",
                s.offloaded, s.file_helpers_peak
            );
            assert!(
                s.file_helpers_peak <= 4,
                "{} file helpers",
                s.file_helpers_peak
            );
            assert_eq!(s.other_helpers_peak, 0);
        },
    );
}

/// tiny_http 0.12: its own thread per connection reads the requests, one
/// coroutine per request answers with `Request::respond` (through the
/// connection's `try_clone`d socket). 8 keep-alive connections × 500
/// requests from plain client threads: every response complete and right.
/// Before description groups (registration.rs), the coroutine's first
/// write made the shared socket non-blocking behind the reader thread's
/// back: its next read got EAGAIN and tiny_http dropped the connection
/// (every second request failed).
#[test]
fn tiny_http_with_coroutine_responses_keeps_connections() {
    in_child(
        "tiny_http_with_coroutine_responses_keeps_connections",
        TWO,
        || {
            use std::io::{BufRead, BufReader, Read, Write};
            use std::os::fd::AsRawFd;
            const CONNS: usize = 8;
            const REQS: usize = 500;
            let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").unwrap());
            let addr = server.server_addr().to_ip().unwrap();
            let srv = server.clone();
            let dispatcher = std::thread::spawn(move || {
                while let Ok(req) = srv.recv() {
                    if req.url() == "/quit" {
                        let _ = req.respond(tiny_http::Response::from_string("bye"));
                        break;
                    }
                    coroutines::spawn(move || {
                        let body = format!("hello {}", req.url());
                        req.respond(tiny_http::Response::from_string(body))
                    });
                }
            });
            // Connections open one after another (each once the previous
            // one has its first answer): tiny_http's connection thread pool
            // can leave a connection unserved when two arrive at once.
            let (first_tx, first_rx) = std::sync::mpsc::channel::<()>();
            let clients: Vec<_> = (0..CONNS)
                .map(|c| {
                    if c > 0 {
                        let _ = first_rx.recv_timeout(Duration::from_secs(20));
                    }
                    let first_tx = first_tx.clone();
                    std::thread::spawn(move || -> Result<usize, String> {
                        let s = std::net::TcpStream::connect(addr).map_err(|e| e.to_string())?;
                        s.set_nodelay(true).unwrap();
                        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
                        let mut w = s.try_clone().unwrap();
                        let mut r = BufReader::new(s);
                        for k in 0..REQS {
                            let path = format!("/{c}/{k}");
                            write!(w, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n")
                                .map_err(|e| format!("request {k}: write: {e}"))?;
                            // Acknowledge at once (no delayed ACK holding up
                            // the second segment of the answer).
                            let one: libc::c_int = 1;
                            // SAFETY: setsockopt with a live int.
                            unsafe {
                                libc::setsockopt(
                                    r.get_ref().as_raw_fd(),
                                    libc::IPPROTO_TCP,
                                    libc::TCP_QUICKACK,
                                    (&one as *const libc::c_int).cast(),
                                    4,
                                )
                            };
                            let mut len = None;
                            let mut status = String::new();
                            r.read_line(&mut status)
                                .map_err(|e| format!("request {k}: {e}"))?;
                            if !status.starts_with("HTTP/1.1 200") {
                                return Err(format!("request {k}: status {status:?}"));
                            }
                            loop {
                                let mut line = String::new();
                                let n = r
                                    .read_line(&mut line)
                                    .map_err(|e| format!("request {k}: {e}"))?;
                                if n == 0 {
                                    return Err(format!("request {k}: EOF in headers"));
                                }
                                if line == "\r\n" {
                                    break;
                                }
                                let l = line.to_ascii_lowercase();
                                if let Some(v) = l.strip_prefix("content-length:") {
                                    len = v.trim().parse::<usize>().ok();
                                }
                            }
                            let len = len.ok_or(format!("request {k}: no length"))?;
                            let mut body = vec![0u8; len];
                            r.read_exact(&mut body)
                                .map_err(|e| format!("request {k}: body: {e}"))?;
                            if body != format!("hello {path}").as_bytes() {
                                return Err(format!("request {k}: body {body:?}"));
                            }
                            if k == 0 {
                                let _ = first_tx.send(());
                            }
                        }
                        Ok(REQS)
                    })
                })
                .collect();
            let mut ok = 0;
            let mut errors = Vec::new();
            for h in clients {
                match h.join().unwrap() {
                    Ok(n) => ok += n,
                    Err(e) => errors.push(e),
                }
            }
            // Stop the dispatcher.
            if let Ok(mut s) = std::net::TcpStream::connect(addr) {
                let _ = s.write_all(b"GET /quit HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
                let mut sink = Vec::new();
                let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
                let _ = s.read_to_end(&mut sink);
            }
            dispatcher.join().unwrap();
            assert!(
                errors.is_empty(),
                "{} of {CONNS} connections failed: {errors:?}",
                errors.len()
            );
            assert_eq!(ok, CONNS * REQS);
        },
    );
}

/// O_NONBLOCK is per open file description: a coroutine writing through a
/// `try_clone`d socket makes the description non-blocking, yet a plain
/// thread reading through the original number still blocks until data
/// comes, sees O_NONBLOCK clear in F_GETFL, and gets WouldBlock once it
/// asks for non-blocking mode itself (the view is per description).
#[test]
fn dup_shared_description_keeps_thread_semantics() {
    in_child("dup_shared_description_keeps_thread_semantics", TWO, || {
        use std::io::{Read, Write};
        use std::os::fd::AsRawFd;
        use std::os::unix::net::UnixStream;
        let (mut a, mut peer) = UnixStream::pair().unwrap();
        let mut b = a.try_clone().unwrap();
        // A coroutine writes through the clone (its lazy init sets the
        // shared description's O_NONBLOCK).
        coroutines::spawn(move || {
            b.write_all(b"ping").unwrap();
            b
        })
        .join()
        .unwrap();
        let mut got = [0u8; 4];
        peer.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"ping");
        // SAFETY: F_GETFL on an open fd.
        let fl = unsafe { libc::fcntl(a.as_raw_fd(), libc::F_GETFL) };
        assert_eq!(fl & libc::O_NONBLOCK, 0, "the thread's view changed");
        // A blocking read on the original number waits for the peer.
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            peer.write_all(b"pong").unwrap();
            peer
        });
        let t0 = Instant::now();
        let mut buf = [0u8; 4];
        a.read_exact(&mut buf)
            .expect("blocking read through the original fd");
        assert_eq!(&buf, b"pong");
        assert!(t0.elapsed() >= Duration::from_millis(40));
        let _peer = t.join().unwrap();
        // The user's own non-blocking mode is honoured.
        a.set_nonblocking(true).unwrap();
        let e = a.read(&mut buf).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::WouldBlock);
        // SAFETY: as above.
        let fl = unsafe { libc::fcntl(a.as_raw_fd(), libc::F_GETFL) };
        assert_ne!(fl & libc::O_NONBLOCK, 0);
        a.set_nonblocking(false).unwrap();
        // SAFETY: as above.
        let fl = unsafe { libc::fcntl(a.as_raw_fd(), libc::F_GETFL) };
        assert_eq!(fl & libc::O_NONBLOCK, 0);
    });
}
