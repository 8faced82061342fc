//! Waiting for children and OS threads from coroutines parks the
//! coroutine: `Command::output()`, `Child::wait()` (waitpid on a specific
//! pid, via a pidfd on the reactor) and `JoinHandle::join` of an OS thread
//! (pthread_join). Each body runs in a child process on 2 executors and
//! checks that the blocked-executor detector started no extra executor.
//! The detector's threshold is raised to 100 ms in the child: on a loaded
//! 2-core machine an executor thread can wait 20+ ms for a CPU, which the
//! detector cannot tell from a blocked call; a wait that blocks (each
//! child or thread lives 200 ms) still exceeds it.

#[path = "../stress/common/mod.rs"]
mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn in_child(name: &str, body: impl FnOnce()) {
    common::in_child(
        "COROUTINES_WAIT_CHILD",
        name,
        &[
            ("COROUTINES_WORKERS", "2"),
            ("COROUTINES_BLOCKED_AFTER", "100ms"),
        ],
        Duration::from_secs(120),
        || {
            body();
            let s = coroutines::stats();
            assert_eq!(
                s.extra_started, 0,
                "the detector had to start executors: {s:?}"
            );
        },
    );
}

/// Issue 10's test: 50 overlapping `Command::output()` of `sh -c 'sleep 0.2'`.
#[test]
fn fifty_command_outputs_overlap() {
    in_child("fifty_command_outputs_overlap", || {
        let t = Instant::now();
        let hs: Vec<_> = (0..50)
            .map(|i| {
                coroutines::spawn(move || {
                    let out = Command::new("sh")
                        .args(["-c", &format!("sleep 0.2; echo {i}")])
                        .output()
                        .unwrap();
                    assert!(out.status.success());
                    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), i.to_string());
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
        // Overlapping: far less than 50 × 0.2 s in sequence.
        assert!(t.elapsed() < Duration::from_secs(8), "{:?}", t.elapsed());
    });
}

/// 50 overlapping `Command::status()` of `sh -c 'sleep 0.2'`: unlike
/// `output()`, std waits for the child right away (no pipes to drain
/// first), so without the waitpid hook both executors block in it for
/// 200 ms at a time and the detector starts extra executors (checked: this
/// test fails with the hook disabled).
#[test]
fn fifty_command_statuses_overlap() {
    in_child("fifty_command_statuses_overlap", || {
        let t = Instant::now();
        let hs: Vec<_> = (0..50)
            .map(|_| {
                coroutines::spawn(|| {
                    let st = Command::new("sh")
                        .args(["-c", "sleep 0.2"])
                        .status()
                        .unwrap();
                    assert!(st.success());
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
        // Overlapping: far less than 50 × 0.2 s in sequence.
        assert!(t.elapsed() < Duration::from_secs(8), "{:?}", t.elapsed());
    });
}

/// 50 coroutines each `spawn()` a child without pipes and `wait()` for it.
#[test]
fn fifty_child_waits_overlap() {
    in_child("fifty_child_waits_overlap", || {
        let t = Instant::now();
        let hs: Vec<_> = (0..50)
            .map(|i| {
                coroutines::spawn(move || {
                    let mut c = Command::new("sh")
                        .args(["-c", &format!("sleep 0.2; exit {}", i % 7)])
                        .stdin(Stdio::null())
                        .stdout(Stdio::null())
                        .stderr(Stdio::null())
                        .spawn()
                        .unwrap();
                    let st = c.wait().unwrap();
                    assert_eq!(st.code(), Some(i % 7));
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
        assert!(t.elapsed() < Duration::from_secs(8), "{:?}", t.elapsed());
    });
}

/// 20 coroutines each join an OS thread that sleeps 200 ms.
#[test]
fn joining_os_threads_parks() {
    in_child("joining_os_threads_parks", || {
        let t = Instant::now();
        let hs: Vec<_> = (0..20u64)
            .map(|i| {
                coroutines::spawn(move || {
                    let th = std::thread::spawn(move || {
                        std::thread::sleep(Duration::from_millis(200));
                        i * 3
                    });
                    assert_eq!(th.join().unwrap(), i * 3);
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
        assert!(t.elapsed() < Duration::from_secs(8), "{:?}", t.elapsed());
    });
}

/// A blocking `flock` (std's `File::lock`) and `fcntl(F_OFD_SETLKW)` park
/// the coroutine: on ONE executor (no extra ones), the holder sleeps with
/// the lock held and must run again to release it; if the waiter blocked
/// the executor this would hang (killed by the child's deadline).
#[test]
fn file_locks_park_the_coroutine() {
    common::in_child(
        "COROUTINES_WAIT_CHILD",
        "file_locks_park_the_coroutine",
        &[("COROUTINES_WORKERS", "1"), ("COROUTINES_MAX_WORKERS", "1")],
        Duration::from_secs(60),
        || {
            let path = std::env::temp_dir().join(format!("coroutines-lock-{}", std::process::id()));
            std::fs::write(&path, b"x").unwrap();
            for ofd in [false, true] {
                let (p1, p2) = (path.clone(), path.clone());
                let (locked_tx, locked_rx) = std::sync::mpsc::channel();
                let holder = coroutines::spawn(move || {
                    let f = std::fs::File::options()
                        .read(true)
                        .write(true)
                        .open(&p1)
                        .unwrap();
                    lock(&f, ofd);
                    locked_tx.send(()).unwrap();
                    std::thread::sleep(Duration::from_millis(100)); // parks, holding it
                    unlock(&f, ofd);
                });
                locked_rx.recv().unwrap(); // the holder has the lock
                let waiter = coroutines::spawn(move || {
                    let f = std::fs::File::options()
                        .read(true)
                        .write(true)
                        .open(&p2)
                        .unwrap();
                    let t = Instant::now();
                    lock(&f, ofd); // must wait for the holder's release
                    unlock(&f, ofd);
                    t.elapsed()
                });
                holder.join().unwrap();
                let waited = waiter.join().unwrap();
                assert!(
                    waited >= Duration::from_millis(50),
                    "did not wait: {waited:?}"
                );
            }
            let _ = std::fs::remove_file(&path);
        },
    );
}

#[allow(clippy::incompatible_msrv)] // test only: File::lock is stable since 1.89; the library itself keeps 1.85
fn lock(f: &std::fs::File, ofd: bool) {
    use std::os::fd::AsRawFd;
    if ofd {
        // SAFETY: a zeroed struct flock describing the whole file.
        let mut fl: libc::flock = unsafe { std::mem::zeroed() };
        fl.l_type = libc::F_WRLCK as i16;
        fl.l_whence = libc::SEEK_SET as i16;
        // SAFETY: a valid fd and struct flock.
        assert_eq!(
            unsafe { libc::fcntl(f.as_raw_fd(), libc::F_OFD_SETLKW, &fl) },
            0
        );
    } else {
        f.lock().unwrap();
    }
}

#[allow(clippy::incompatible_msrv)] // test only: File::unlock is stable since 1.89; the library itself keeps 1.85
fn unlock(f: &std::fs::File, ofd: bool) {
    use std::os::fd::AsRawFd;
    if ofd {
        // SAFETY: as in `lock`.
        let mut fl: libc::flock = unsafe { std::mem::zeroed() };
        fl.l_type = libc::F_UNLCK as i16;
        fl.l_whence = libc::SEEK_SET as i16;
        // SAFETY: as in `lock`.
        assert_eq!(
            unsafe { libc::fcntl(f.as_raw_fd(), libc::F_OFD_SETLK, &fl) },
            0
        );
    } else {
        f.unlock().unwrap();
    }
}

/// Opening a FIFO (no O_NONBLOCK) waits for the other end; in a coroutine
/// that wait parks. On ONE executor (no extra ones): the first opener
/// waits while its sibling sleeps, then opens the other end and writes; if
/// the first open blocked the executor the sibling could never run (the
/// child is killed at its deadline). Both orders: reader first (std's
/// `open64` on both sides), writer first (the writer uses `creat`).
#[test]
fn fifo_open_parks_the_coroutine() {
    common::in_child(
        "COROUTINES_WAIT_CHILD",
        "fifo_open_parks_the_coroutine",
        &[("COROUTINES_WORKERS", "1"), ("COROUTINES_MAX_WORKERS", "1")],
        Duration::from_secs(60),
        || {
            use std::io::{Read, Write};
            for reader_first in [true, false] {
                let path = std::env::temp_dir().join(format!(
                    "coroutines-fifo-{}-{reader_first}",
                    std::process::id()
                ));
                let _ = std::fs::remove_file(&path);
                let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
                // SAFETY: a NUL-terminated path.
                assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
                let (p1, p2) = (path.clone(), path.clone());
                let delay = |first: bool| {
                    if !first {
                        std::thread::sleep(Duration::from_millis(100)); // parks
                    }
                };
                let reader = coroutines::spawn(move || {
                    delay(reader_first);
                    let t = Instant::now();
                    let mut f = std::fs::File::open(&p1).unwrap();
                    let waited = t.elapsed();
                    let mut s = String::new();
                    f.read_to_string(&mut s).unwrap();
                    (s, waited)
                });
                let writer = coroutines::spawn(move || {
                    delay(!reader_first);
                    let t = Instant::now();
                    let mut f = if reader_first {
                        std::fs::OpenOptions::new().write(true).open(&p2).unwrap()
                    } else {
                        // creat(2) on the existing FIFO: opens it for writing.
                        let c = std::ffi::CString::new(p2.as_os_str().as_encoded_bytes()).unwrap();
                        // SAFETY: a NUL-terminated path.
                        let fd = unsafe { libc::creat(c.as_ptr(), 0o600) };
                        assert!(fd >= 0, "{}", std::io::Error::last_os_error());
                        use std::os::fd::FromRawFd;
                        // SAFETY: a fresh fd we own.
                        unsafe { std::fs::File::from_raw_fd(fd) }
                    };
                    let waited = t.elapsed();
                    f.write_all(b"through the fifo").unwrap();
                    waited
                });
                let w_waited = writer.join().unwrap();
                let (s, r_waited) = reader.join().unwrap();
                assert_eq!(s, "through the fifo");
                // The first opener really waited for its sibling.
                let first = if reader_first { r_waited } else { w_waited };
                assert!(
                    first >= Duration::from_millis(50),
                    "reader_first={reader_first}: did not wait: {first:?}"
                );
                let _ = std::fs::remove_file(&path);
            }
        },
    );
}

/// A reader coroutine opens a FIFO through C stdio with `open_reader`
/// (glibc opens with its internal `__open`, which no `open` hook sees) and
/// must park until a writer coroutine opens the other end 100 ms later; it
/// then reads the writer's line. On one executor with no extra ones
/// allowed, an open that blocked the executor hangs the child until its
/// deadline.
fn fifo_stdio_open_parks(
    name: &str,
    open_reader: fn(&std::ffi::CStr, &std::path::Path) -> *mut libc::FILE,
) {
    let dir = std::env::temp_dir();
    let fifo = dir.join(format!("coroutines-fifo-{name}-{}", std::process::id()));
    let _ = std::fs::remove_file(&fifo);
    let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: a NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let (c1, c2) = (c.clone(), c.clone());
    let scratch = dir.join(format!("coroutines-plain-{name}-{}", std::process::id()));
    let scratch2 = scratch.clone();
    // stdio reads with glibc's internal `read`, which no hook sees: an
    // `fgets` on the empty FIFO would block the one executor (README's
    // table). So the reader reads only once the writer has written and
    // closed.
    let (written_tx, written_rx) = std::sync::mpsc::channel::<()>();
    let reader = coroutines::spawn(move || {
        let t = Instant::now();
        let f = open_reader(&c1, &scratch2);
        assert!(!f.is_null(), "{}", std::io::Error::last_os_error());
        let waited = t.elapsed();
        written_rx.recv().unwrap();
        let mut buf = [0u8; 64];
        // SAFETY: `buf` has room for 64 bytes; `f` is open.
        let line = unsafe { libc::fgets(buf.as_mut_ptr().cast(), 64, f) };
        assert!(!line.is_null());
        // SAFETY: fgets wrote a NUL-terminated string; `f` is ours.
        let s = unsafe { std::ffi::CStr::from_ptr(buf.as_ptr().cast()) }
            .to_string_lossy()
            .into_owned();
        // SAFETY: closes the stream we opened.
        unsafe { libc::fclose(f) };
        (s, waited)
    });
    let writer = coroutines::spawn(move || {
        std::thread::sleep(Duration::from_millis(100)); // parks
                                                        // SAFETY: NUL-terminated path and mode.
        let f = unsafe { libc::fopen(c2.as_ptr(), c"w".as_ptr()) };
        assert!(!f.is_null(), "{}", std::io::Error::last_os_error());
        // SAFETY: a NUL-terminated string into the stream we opened, then
        // closed (flushing it).
        unsafe {
            libc::fputs(c"through stdio\n".as_ptr(), f);
            libc::fclose(f);
        }
        written_tx.send(()).unwrap();
    });
    writer.join().unwrap();
    let (s, waited) = reader.join().unwrap();
    assert_eq!(s, "through stdio\n");
    assert!(
        waited >= Duration::from_millis(50),
        "the reader's open did not wait for the writer: {waited:?}"
    );
    let _ = std::fs::remove_file(&fifo);
    let _ = std::fs::remove_file(&scratch);
}

/// `freopen` of a FIFO: the reader reopens a stream it had on a regular
/// file onto the FIFO. It hung to the deadline before the hook.
#[test]
fn fifo_freopen_parks_the_coroutine() {
    common::in_child(
        "COROUTINES_WAIT_CHILD",
        "fifo_freopen_parks_the_coroutine",
        &[("COROUTINES_WORKERS", "1"), ("COROUTINES_MAX_WORKERS", "1")],
        Duration::from_secs(30),
        || {
            fifo_stdio_open_parks("freopen", |fifo, scratch| {
                std::fs::write(scratch, b"plain\n").unwrap();
                let p = std::ffi::CString::new(scratch.as_os_str().as_encoded_bytes()).unwrap();
                // SAFETY: NUL-terminated path and mode.
                let f = unsafe { libc::fopen(p.as_ptr(), c"r".as_ptr()) };
                assert!(!f.is_null(), "{}", std::io::Error::last_os_error());
                // SAFETY: NUL-terminated path and mode; `f` is our stream.
                unsafe { libc::freopen(fifo.as_ptr(), c"r".as_ptr(), f) }
            })
        },
    );
}

/// The same through `fopen`: glibc's `fopen` opens with its internal
/// `__open`, so `fopen` itself is hooked (checked: the child hung before
/// the hook).
#[test]
fn fifo_fopen_parks_the_coroutine() {
    common::in_child(
        "COROUTINES_WAIT_CHILD",
        "fifo_fopen_parks_the_coroutine",
        &[("COROUTINES_WORKERS", "1"), ("COROUTINES_MAX_WORKERS", "1")],
        Duration::from_secs(30),
        || {
            fifo_stdio_open_parks("fopen", |fifo, _| {
                // SAFETY: NUL-terminated path and mode.
                unsafe { libc::fopen(fifo.as_ptr(), c"r".as_ptr()) }
            })
        },
    );
}

/// `fork` from a coroutine, the child going on without `exec` (a pre-fork
/// server, a daemon): the child runs only the forking coroutine, as a plain
/// thread. Its sleep, its blocking read and a coroutine it spawns work
/// there, and it exits with status 0 when the forking coroutine returns.
/// Meanwhile the parent's coroutines keep their sockets: the child never
/// enters the copied scheduler, so it neither runs copies of the parent's
/// coroutines (the line counts below) nor takes events from the epoll
/// instance it shares with the parent (the echo round trips), and closing
/// its copy of the echo's socket does not deregister the parent's. Before,
/// the child's first park entered the copied scheduler (a copy of the
/// echo coroutine in the child read the parent's messages), and the
/// child's close removed the parent's registration from the shared epoll
/// instance.
#[test]
fn fork_child_runs_only_the_forking_coroutine() {
    use std::io::{BufRead, BufReader, Read, Write};
    use std::os::unix::net::UnixStream;
    in_child("fork_child_runs_only_the_forking_coroutine", || {
        // Echo: `echo` answers every byte written to `client`.
        let (mut client, mut server) = UnixStream::pair().unwrap();
        client
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let server_fd = std::os::fd::AsRawFd::as_raw_fd(&server);
        let echo = coroutines::spawn(move || {
            let mut b = [0u8; 1];
            while server.read_exact(&mut b).is_ok() && b[0] != b'q' {
                server.write_all(&b).unwrap();
            }
        });
        // One round trip first: the echo's socket is now registered with
        // the reactor's epoll instance.
        client.write_all(b"x").unwrap();
        client.read_exact(&mut [0u8; 1]).unwrap();
        // `marker` writes "parent\n" to `out` once poked, then ends.
        let (out_r, out_w) = UnixStream::pair().unwrap();
        let (mut poke_w, mut poke_r) = UnixStream::pair().unwrap();
        let mut out_marker = out_w.try_clone().unwrap();
        let marker = coroutines::spawn(move || {
            let mut b = [0u8; 1];
            poke_r.read_exact(&mut b).unwrap();
            out_marker.write_all(b"parent\n").unwrap();
        });
        // The child's input: the parent writes it after a while.
        let (mut feed_w, mut feed_r) = UnixStream::pair().unwrap();
        let feed_w_fd = std::os::fd::AsRawFd::as_raw_fd(&feed_w);
        let mut out_child = out_w;
        let pid = coroutines::spawn(move || {
            // SAFETY: fork; the child only runs this coroutine (see above).
            let pid = unsafe { libc::fork() };
            if pid != 0 {
                return pid;
            }
            // Closing the child's copy of a registered socket must not
            // deregister the parent's (they shared one epoll instance).
            // SAFETY: the child's own copy of the fd; nothing else in the
            // child uses it.
            unsafe { libc::close(server_fd) };
            // Nor may the child keep the feed's writing end open: if the
            // parent fails before feeding, the child's read must see EOF
            // and end (it would otherwise wait for ever, holding the
            // harness's output pipe).
            // SAFETY: as above, the child's own copy.
            unsafe { libc::close(feed_w_fd) };
            std::thread::sleep(Duration::from_millis(100));
            let mut b = [0u8; 1];
            feed_r.read_exact(&mut b).unwrap();
            let v = coroutines::spawn(move || 6 * b[0] as u32).join().unwrap();
            out_child
                .write_all(format!("child {v}\n").as_bytes())
                .unwrap();
            // Returning ends the child (status 0).
            0
        })
        .join()
        .unwrap();
        assert!(pid > 0, "fork failed");
        // While the child lives (it waits for the feed below): echo round
        // trips from the parent. A count, not a time: under load 200 ms
        // once held only 5 of them.
        for _ in 0..20 {
            client.write_all(b"x").unwrap();
            let mut b = [0u8; 1];
            client
                .read_exact(&mut b)
                .expect("an echo answer went missing (taken by the fork child?)");
            assert_eq!(&b, b"x");
            coroutines::sleep(Duration::from_millis(2));
        }
        feed_w.write_all(&[7]).unwrap();
        poke_w.write_all(b"!").unwrap();
        marker.join().unwrap();
        let mut status = 0;
        // SAFETY: waits for our own child; `status` is a valid out pointer.
        assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
        assert!(
            libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
            "child status {status:#x}"
        );
        client.write_all(b"q").unwrap();
        echo.join().unwrap();
        let mut lines: Vec<String> = Vec::new();
        let mut r = BufReader::new(out_r);
        r.get_ref()
            .set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        let mut line = String::new();
        while r.read_line(&mut line).is_ok_and(|n| n > 0) {
            lines.push(std::mem::take(&mut line));
        }
        lines.sort();
        assert_eq!(lines, ["child 42\n", "parent\n"], "lines on the output");
    });
}

/// `fork` from a plain thread while the runtime runs: in the child no
/// executor exists, so a coroutine spawned there gets an OS thread of its
/// own and can be joined (before, it waited in the copied scheduler's
/// queue for an executor that did not exist in the child).
#[test]
fn fork_from_a_plain_thread_then_spawn_in_the_child() {
    use std::io::{Read, Write};
    use std::os::unix::net::UnixStream;
    in_child("fork_from_a_plain_thread_then_spawn_in_the_child", || {
        // The runtime runs, with coroutines parked on a socket.
        let (mut a, mut b) = UnixStream::pair().unwrap();
        let parked = coroutines::spawn(move || {
            let mut byte = [0u8; 1];
            b.read_exact(&mut byte).unwrap();
            byte[0]
        });
        let (mut r, mut w) = UnixStream::pair().unwrap();
        // SAFETY: fork from this plain thread; the child only spawns and
        // joins a coroutine, writes to its socket and exits.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork failed");
        if pid == 0 {
            let v = coroutines::spawn(|| 6 * 7).join().unwrap_or(0);
            let _ = w.write_all(&[v as u8]);
            // SAFETY: ends the child without running the test harness's
            // exit path.
            unsafe { libc::_exit(0) };
        }
        drop(w);
        let mut got = Vec::new();
        r.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        r.read_to_end(&mut got).unwrap();
        let mut status = 0;
        // SAFETY: waits for our own child; `status` is a valid out pointer.
        assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
        assert_eq!(got, [42], "the child's coroutine result");
        a.write_all(&[9]).unwrap();
        assert_eq!(parked.join().unwrap(), 9);
    });
}
