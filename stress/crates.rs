//! Popular crates used inside coroutines the way their users use them on
//! threads: `coroutines::spawn` where the program would call
//! `std::thread::spawn`, nothing else changed.
//!
//! Each test runs twice in child processes (the runtime is global per
//! process) with 2 executors: once with the default time slice and once
//! with `COROUTINES_SLICE=100us` (preemption everywhere it may happen),
//! each with a watchdog: a hang fails the test.

mod common;

use common::{corpus, join_all};

use std::io::{BufRead, BufReader, Read, Write};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const CHILD: &str = "COROUTINES_CRATES_CHILD";

/// Runs `body` in a child with 2 executors and the default slice, then in
/// one with a 100 µs slice.
fn in_children(name: &str, body: impl Fn()) {
    if std::env::var_os(CHILD).is_some() {
        body();
        return;
    }
    for env in [
        &[("COROUTINES_WORKERS", "2")][..],
        &[("COROUTINES_WORKERS", "2"), ("COROUTINES_SLICE", "100us")][..],
    ] {
        common::in_child(CHILD, name, env, Duration::from_secs(120), &body);
    }
}

/// flate2 (its default pure-Rust backend): 16 coroutines each stream 1 MiB
/// through a `GzEncoder` writer in odd-sized chunks and back through a
/// `GzDecoder` reader; one pair compresses into a pipe-like socket read
/// by a sibling coroutine.
#[test]
fn flate2_streaming() {
    in_children("flate2_streaming", || {
        use flate2::read::GzDecoder;
        use flate2::write::GzEncoder;
        use flate2::Compression;
        let hs: Vec<_> = (0..16u64)
            .map(|i| {
                coroutines::spawn(move || {
                    let data = corpus(i + 1, 1 << 20);
                    let mut enc = GzEncoder::new(Vec::new(), Compression::new((i % 9 + 1) as u32));
                    for c in data.chunks(4093) {
                        enc.write_all(c).unwrap();
                    }
                    let gz = enc.finish().unwrap();
                    assert!(gz.len() < data.len() / 2, "did not compress: {}", gz.len());
                    let mut dec = GzDecoder::new(&gz[..]);
                    let mut back = Vec::new();
                    let mut buf = [0u8; 1000];
                    loop {
                        let n = dec.read(&mut buf).unwrap();
                        if n == 0 {
                            break;
                        }
                        back.extend_from_slice(&buf[..n]);
                    }
                    assert!(back == data, "round trip {i} differs");
                    back.len()
                })
            })
            .collect();
        let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        let writer = coroutines::spawn(move || {
            let mut enc = flate2::write::ZlibEncoder::new(a, Compression::default());
            let data = corpus(99, 3 << 20);
            for c in data.chunks(10_000) {
                enc.write_all(c).unwrap();
            }
            enc.finish().unwrap();
            data
        });
        let reader = coroutines::spawn(move || {
            let mut out = Vec::new();
            flate2::read::ZlibDecoder::new(b)
                .read_to_end(&mut out)
                .unwrap();
            out
        });
        assert!(join_all(hs).iter().all(|&n| n == 1 << 20));
        let sent = writer.join().unwrap();
        assert!(reader.join().unwrap() == sent);
    });
}

/// `rand::thread_rng()`: a thread-local generator seeded from the OS,
/// used by 500 coroutines across yields and preemption. Every coroutine
/// has its own (500 distinct first draws) and each keeps working after
/// migrating.
#[test]
fn rand_thread_rng_per_coroutine() {
    in_children("rand_thread_rng_per_coroutine", || {
        use rand::{Rng, RngCore};
        let hs: Vec<_> = (0..500)
            .map(|_| {
                coroutines::spawn(|| {
                    let first = rand::thread_rng().next_u64();
                    let mut sum = 0u64;
                    for k in 0..2000 {
                        sum = sum.wrapping_add(rand::thread_rng().gen_range(0..1000u64));
                        if k % 500 == 0 {
                            coroutines::yield_now();
                        }
                    }
                    let mut v: Vec<u32> = (0..100).collect();
                    rand::seq::SliceRandom::shuffle(&mut v[..], &mut rand::thread_rng());
                    v.sort();
                    assert_eq!(v, (0..100).collect::<Vec<_>>());
                    (first, sum)
                })
            })
            .collect();
        let res = join_all(hs);
        let mut firsts: Vec<u64> = res.iter().map(|r| r.0).collect();
        firsts.sort();
        firsts.dedup();
        assert_eq!(
            firsts.len(),
            500,
            "two coroutines drew the same first number"
        );
        // 2000 draws in 0..1000: mean 999,000, far from 0 or the max.
        assert!(res.iter().all(|r| r.1 > 500_000 && r.1 < 1_500_000));
    });
}

/// `log` + `env_logger` writing through a pipe target: 100 coroutines log
/// 50 records each; every record arrives whole (one line each).
#[test]
fn env_logger_from_coroutines() {
    in_children("env_logger_from_coroutines", || {
        #[derive(Clone)]
        struct Sink(Arc<Mutex<Vec<u8>>>);
        impl Write for Sink {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let sink = Sink(Arc::new(Mutex::new(Vec::new())));
        env_logger::Builder::new()
            .filter_level(log::LevelFilter::Debug)
            .format_timestamp_micros()
            .target(env_logger::Target::Pipe(Box::new(sink.clone())))
            .init();
        log::info!("main starts");
        let hs: Vec<_> = (0..100)
            .map(|i| {
                coroutines::spawn(move || {
                    for k in 0..50 {
                        log::debug!("coroutine {i} record {k} {}", "x".repeat(k));
                        if k % 10 == 0 {
                            std::thread::sleep(Duration::from_micros(200));
                        }
                    }
                })
            })
            .collect();
        join_all(hs);
        log::logger().flush();
        let text = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 1 + 100 * 50, "lines lost or torn");
        for i in 0..100 {
            for k in [0, 49] {
                let want = format!("coroutine {i} record {k} {}", "x".repeat(k));
                assert!(lines.iter().any(|l| l.ends_with(&want)), "missing {want}");
            }
        }
    });
}

/// Lazy initialisation contended by 64 coroutines: `std::sync::LazyLock`,
/// `once_cell::sync::Lazy` and `OnceCell::get_or_init` whose initialisers
/// sleep and spin, plus a `DashMap` counted into from every coroutine.
/// Each initialiser runs once; the map's counts are exact.
#[test]
fn lazy_init_and_dashmap_contended() {
    in_children("lazy_init_and_dashmap_contended", || {
        static INITS: AtomicUsize = AtomicUsize::new(0);
        static STD_LAZY: std::sync::LazyLock<Vec<u64>> = std::sync::LazyLock::new(|| {
            INITS.fetch_add(1, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(30));
            (0..1000).collect()
        });
        static OC_LAZY: once_cell::sync::Lazy<String> = once_cell::sync::Lazy::new(|| {
            INITS.fetch_add(1, Ordering::SeqCst);
            let mut x = 0u64;
            for i in 0..3_000_000u64 {
                x = std::hint::black_box(x.wrapping_add(i));
            }
            format!("v{}", x % 10)
        });
        static CELL: once_cell::sync::OnceCell<usize> = once_cell::sync::OnceCell::new();
        let map: Arc<dashmap::DashMap<u64, u64>> = Arc::new(dashmap::DashMap::new());
        let hs: Vec<_> = (0..64u64)
            .map(|i| {
                let map = map.clone();
                coroutines::spawn(move || {
                    let s: u64 = STD_LAZY.iter().sum();
                    let l = OC_LAZY.len();
                    let c = *CELL.get_or_init(|| {
                        INITS.fetch_add(1, Ordering::SeqCst);
                        std::thread::sleep(Duration::from_millis(10));
                        7
                    });
                    for k in 0..2000u64 {
                        *map.entry(k % 100).or_insert(0) += 1;
                        if k % 250 == 0 {
                            coroutines::yield_now();
                        }
                    }
                    map.insert(1000 + i, i);
                    (s, l, c)
                })
            })
            .collect();
        for r in join_all(hs) {
            assert_eq!(r, (499_500, 2, 7));
        }
        assert_eq!(INITS.load(Ordering::SeqCst), 3);
        assert_eq!(map.len(), 164);
        for k in 0..100 {
            assert_eq!(*map.get(&k).unwrap(), 64 * 20);
        }
    });
}

/// OS threads started from inside coroutines: `std::thread::scope` (4
/// scoped threads borrowing the coroutine's data), `std::thread::spawn`
/// joined from the coroutine, and `crossbeam::scope`; the threads take a
/// `Mutex` the coroutines take too. 16 coroutines at once.
#[test]
fn os_threads_from_coroutines() {
    in_children("os_threads_from_coroutines", || {
        let shared = Arc::new(Mutex::new(0u64));
        let hs: Vec<_> = (0..16u64)
            .map(|i| {
                let shared = shared.clone();
                coroutines::spawn(move || {
                    let data: Vec<u64> = (0..40_000).map(|x| x * (i + 1)).collect();
                    let total: u64 = std::thread::scope(|s| {
                        let parts: Vec<_> = data
                            .chunks(10_000)
                            .map(|c| {
                                let shared = &shared;
                                s.spawn(move || {
                                    *shared.lock().unwrap() += 1;
                                    c.iter().sum::<u64>()
                                })
                            })
                            .collect();
                        parts.into_iter().map(|p| p.join().unwrap()).sum()
                    });
                    assert_eq!(total, data.iter().sum::<u64>());
                    let sh = shared.clone();
                    let t = std::thread::Builder::new()
                        .name(format!("worker-{i}"))
                        .spawn(move || {
                            std::thread::sleep(Duration::from_millis(20));
                            *sh.lock().unwrap() += 10;
                            std::thread::current().name().unwrap().to_string()
                        })
                        .unwrap();
                    *shared.lock().unwrap() += 100;
                    assert_eq!(t.join().unwrap(), format!("worker-{i}"));
                    let cb: u64 = crossbeam::scope(|s| {
                        let hs: Vec<_> = data
                            .chunks(20_000)
                            .map(|c| s.spawn(move |_| c.iter().max().copied().unwrap()))
                            .collect();
                        hs.into_iter().map(|h| h.join().unwrap()).max().unwrap()
                    })
                    .unwrap();
                    assert_eq!(cb, 39_999 * (i + 1));
                    total
                })
            })
            .collect();
        join_all(hs);
        assert_eq!(*shared.lock().unwrap(), 16 * (4 + 10 + 100));
    });
}

/// crossbeam-utils `Backoff` spin-then-snooze handshakes between 32 pairs
/// of coroutines (a snooze yields the thread: it must let the partner on
/// the same executor run).
#[test]
fn crossbeam_backoff_handshake() {
    in_children("crossbeam_backoff_handshake", || {
        use crossbeam::utils::Backoff;
        use std::sync::atomic::AtomicU64;
        let hs: Vec<_> = (0..32)
            .flat_map(|_| {
                let flag = Arc::new(AtomicU64::new(0));
                let f2 = flag.clone();
                let ping = coroutines::spawn(move || {
                    for k in 0..200u64 {
                        let b = Backoff::new();
                        while flag.load(Ordering::Acquire) != 2 * k {
                            b.snooze();
                        }
                        flag.store(2 * k + 1, Ordering::Release);
                    }
                    200
                });
                let pong = coroutines::spawn(move || {
                    for k in 0..200u64 {
                        let b = Backoff::new();
                        while f2.load(Ordering::Acquire) != 2 * k + 1 {
                            b.snooze();
                        }
                        f2.store(2 * k + 2, Ordering::Release);
                    }
                    200
                });
                [ping, pong]
            })
            .collect();
        assert!(join_all(hs).iter().all(|&n| n == 200));
    });
}

/// Panics in coroutines with a custom panic hook, `catch_unwind`, and
/// `Backtrace::force_capture()` taken inside the hook and in running
/// coroutines (unwinding tables walked over coroutine stacks, under
/// preemption). With `RUST_BACKTRACE=1` the default hook prints too.
#[test]
fn panics_hooks_and_backtraces() {
    in_children("panics_hooks_and_backtraces", || {
        static HOOKED: AtomicUsize = AtomicUsize::new(0);
        static FRAMES_OK: AtomicUsize = AtomicUsize::new(0);
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            HOOKED.fetch_add(1, Ordering::SeqCst);
            let bt = std::backtrace::Backtrace::force_capture().to_string();
            if bt.contains("inner_fails") {
                FRAMES_OK.fetch_add(1, Ordering::SeqCst);
            }
            if HOOKED.load(Ordering::SeqCst) <= 2 {
                default(info);
            }
        }));
        #[inline(never)]
        fn inner_fails(i: usize) -> usize {
            if i % 2 == 0 {
                panic!("even coroutine {i}");
            }
            std::hint::black_box(i)
        }
        let hs: Vec<_> = (0..100usize)
            .map(|i| {
                coroutines::Builder::new()
                    .name(format!("p{i}"))
                    .spawn(move || {
                        let mut spin = 0u64;
                        for k in 0..200_000u64 {
                            spin = std::hint::black_box(spin ^ k);
                        }
                        let caught = std::panic::catch_unwind(|| inner_fails(i)).is_err();
                        let bt = std::backtrace::Backtrace::force_capture().to_string();
                        assert!(bt.contains("panics_hooks_and_backtraces"), "{bt}");
                        if i % 10 == 3 {
                            panic!("uncaught in {i}");
                        }
                        caught
                    })
                    .unwrap()
            })
            .collect();
        let mut caught = 0;
        let mut uncaught = 0;
        for (i, h) in hs.into_iter().enumerate() {
            match h.join() {
                Ok(c) => {
                    assert_eq!(c, i % 2 == 0);
                    caught += c as usize;
                }
                Err(e) => {
                    assert_eq!(
                        e.downcast_ref::<String>().unwrap(),
                        &format!("uncaught in {i}")
                    );
                    uncaught += 1;
                }
            }
        }
        assert_eq!((caught, uncaught), (50, 10));
        assert_eq!(HOOKED.load(Ordering::SeqCst), 60);
        assert_eq!(FRAMES_OK.load(Ordering::SeqCst), 50);
    });
}

/// `std::process::Command` with piped stdin and stdout from 20 coroutines:
/// a sibling coroutine feeds `cat` 256 KiB (more than a pipe holds) while
/// the coroutine reads it back; `sort` through `output()`-style use.
#[test]
fn command_piped_stdin_stdout() {
    in_children("command_piped_stdin_stdout", || {
        use std::process::{Command, Stdio};
        let hs: Vec<_> = (0..20u64)
            .map(|i| {
                coroutines::spawn(move || {
                    let data = corpus(i + 7, 256 << 10);
                    let mut child = Command::new("cat")
                        .stdin(Stdio::piped())
                        .stdout(Stdio::piped())
                        .spawn()
                        .unwrap();
                    let mut stdin = child.stdin.take().unwrap();
                    let d2 = data.clone();
                    let feeder = coroutines::spawn(move || stdin.write_all(&d2).unwrap());
                    let mut back = Vec::new();
                    child.stdout.take().unwrap().read_to_end(&mut back).unwrap();
                    feeder.join().unwrap();
                    assert!(child.wait().unwrap().success());
                    assert!(back == data, "cat {i} returned other bytes");
                    let mut sort = Command::new("sort")
                        .arg("-n")
                        .stdin(Stdio::piped())
                        .stdout(Stdio::piped())
                        .spawn()
                        .unwrap();
                    {
                        let mut w = sort.stdin.take().unwrap();
                        for k in (0..500u64).rev() {
                            writeln!(w, "{}", k * (i + 1)).unwrap();
                        }
                    }
                    let out = sort.wait_with_output().unwrap();
                    let nums: Vec<u64> = String::from_utf8(out.stdout)
                        .unwrap()
                        .lines()
                        .map(|l| l.parse().unwrap())
                        .collect();
                    assert_eq!(nums, (0..500u64).map(|k| k * (i + 1)).collect::<Vec<_>>());
                })
            })
            .collect();
        join_all(hs);
    });
}

/// A chat server with std::net: one coroutine per connection reads lines
/// and broadcasts each to every client through cloned streams. 40 clients
/// (coroutines too) each send 25 lines and read until they have seen all
/// 1,000 lines.
#[test]
fn chat_server_broadcast() {
    in_children("chat_server_broadcast", || {
        use std::net::{TcpListener, TcpStream};
        const CLIENTS: usize = 40;
        const LINES: usize = 25;
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let peers: Arc<Mutex<Vec<TcpStream>>> = Arc::new(Mutex::new(Vec::new()));
        let p2 = peers.clone();
        // Everyone connected *and accepted* before anyone talks, so every
        // line reaches every client (a connect completes in the kernel's
        // backlog before the server accepts it: with the clients alone on
        // the barrier, a late-accepted one missed early lines and waited
        // forever — seen once under load).
        let start = Arc::new(std::sync::Barrier::new(CLIENTS + 1));
        let server_start = start.clone();
        let server = coroutines::spawn(move || {
            let mut conns = Vec::new();
            for _ in 0..CLIENTS {
                let (s, _) = listener.accept().unwrap();
                p2.lock().unwrap().push(s.try_clone().unwrap());
                let peers = p2.clone();
                conns.push(coroutines::spawn(move || {
                    let mut r = BufReader::new(s);
                    let mut line = String::new();
                    let mut n = 0;
                    while r.read_line(&mut line).unwrap() > 0 {
                        let mut ps = peers.lock().unwrap();
                        for p in ps.iter_mut() {
                            p.write_all(line.as_bytes()).unwrap();
                        }
                        drop(ps);
                        line.clear();
                        n += 1;
                    }
                    n
                }));
            }
            server_start.wait();
            join_all(conns).into_iter().sum::<usize>()
        });
        let clients: Vec<_> = (0..CLIENTS)
            .map(|c| {
                let start = start.clone();
                coroutines::spawn(move || {
                    let s = TcpStream::connect(addr).unwrap();
                    // Everyone accepted before anyone talks: all see all.
                    start.wait();
                    let mut w = s.try_clone().unwrap();
                    let sender = coroutines::spawn(move || {
                        for k in 0..LINES {
                            writeln!(w, "client {c} line {k}").unwrap();
                        }
                        w
                    });
                    let mut r = BufReader::new(s);
                    let mut line = String::new();
                    let mut mine = 0;
                    for _ in 0..CLIENTS * LINES {
                        line.clear();
                        assert!(r.read_line(&mut line).unwrap() > 0, "early EOF");
                        if line.starts_with(&format!("client {c} ")) {
                            mine += 1;
                        }
                    }
                    let w = sender.join().unwrap();
                    w.shutdown(std::net::Shutdown::Write).unwrap();
                    mine
                })
            })
            .collect();
        assert!(join_all(clients).iter().all(|&m| m == LINES));
        assert_eq!(server.join().unwrap(), CLIENTS * LINES);
        assert_eq!(peers.lock().unwrap().len(), CLIENTS);
    });
}

/// signal-hook's `Signals` iterator in a coroutine (its self-pipe read
/// parks), signals raised by other coroutines one at a time.
#[test]
fn signal_hook_iterator() {
    in_children("signal_hook_iterator", || {
        use signal_hook::consts::SIGUSR1;
        use signal_hook::iterator::Signals;
        let mut signals = Signals::new([SIGUSR1]).unwrap();
        let handle = signals.handle();
        let seen = Arc::new(AtomicUsize::new(0));
        let s2 = seen.clone();
        let waiter = coroutines::spawn(move || {
            let mut n = 0;
            for sig in signals.forever() {
                assert_eq!(sig, SIGUSR1);
                n += 1;
                s2.store(n, Ordering::SeqCst);
            }
            n
        });
        let raiser = coroutines::spawn(move || {
            for k in 1..=20 {
                signal_hook::low_level::raise(SIGUSR1).unwrap();
                while seen.load(Ordering::SeqCst) < k {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        });
        raiser.join().unwrap();
        handle.close();
        assert_eq!(waiter.join().unwrap(), 20);
    });
}

/// std::fs under coroutines: 8 coroutines build a tree of 400 files in a
/// `tempfile` directory, 8 others walk it with `walkdir` and `read_dir`
/// and read every file back, one `memmap2`s a big file and sums it.
#[test]
fn fs_tree_walkdir_tempfile_memmap() {
    in_children("fs_tree_walkdir_tempfile_memmap", || {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        let hs: Vec<_> = (0..8u64)
            .map(|i| {
                let root = root.clone();
                coroutines::spawn(move || {
                    for d in 0..5 {
                        let sub = root.join(format!("d{i}")).join(format!("s{d}"));
                        std::fs::create_dir_all(&sub).unwrap();
                        for f in 0..10 {
                            let mut t = tempfile::NamedTempFile::new_in(&sub).unwrap();
                            write!(t, "{i}/{d}/{f}").unwrap();
                            t.persist(sub.join(format!("f{f}.txt"))).unwrap();
                        }
                    }
                })
            })
            .collect();
        join_all(hs);
        let hs: Vec<_> = (0..8)
            .map(|_| {
                let root = root.clone();
                coroutines::spawn(move || {
                    let mut files = 0;
                    let mut bytes = 0;
                    for e in walkdir::WalkDir::new(&root).sort_by_file_name() {
                        let e = e.unwrap();
                        if e.file_type().is_file() {
                            let s = std::fs::read_to_string(e.path()).unwrap();
                            let parts: Vec<&str> = s.split('/').collect();
                            assert_eq!(parts.len(), 3);
                            files += 1;
                            bytes += s.len();
                        }
                    }
                    let top = std::fs::read_dir(&root).unwrap().count();
                    (files, bytes, top)
                })
            })
            .collect();
        for r in join_all(hs) {
            assert_eq!((r.0, r.2), (400, 8));
            assert_eq!(r.1, 400 * 5);
        }
        let big = root.join("big.bin");
        let data = corpus(3, 8 << 20);
        std::fs::write(&big, &data).unwrap();
        let want: u64 = data.iter().map(|&b| b as u64).sum();
        let hs: Vec<_> = (0..4)
            .map(|_| {
                let big = big.clone();
                coroutines::spawn(move || {
                    let f = std::fs::File::open(&big).unwrap();
                    // SAFETY: the file is not modified while mapped.
                    let m = unsafe { memmap2::Mmap::map(&f).unwrap() };
                    m.iter().map(|&b| b as u64).sum::<u64>()
                })
            })
            .collect();
        assert!(join_all(hs).iter().all(|&s| s == want));
    });
}

/// serde_json parsing a 4 MB document in 8 coroutines at once, alongside
/// 2 CPU hogs, and regex (one shared `Regex`, whose match caches are kept
/// per thread) matching in 100 coroutines.
#[test]
fn serde_json_and_regex_under_preemption() {
    in_children("serde_json_and_regex_under_preemption", || {
        use std::sync::atomic::{AtomicBool, AtomicU64};
        let stop = Arc::new(AtomicBool::new(false));
        let hogs: Vec<_> = (0..2)
            .map(|_| {
                let (s, c) = (stop.clone(), Arc::new(AtomicU64::new(0)));
                coroutines::spawn(move || common::hog(s, c))
            })
            .collect();
        let mut doc = String::from("[");
        let mut want = 0u64;
        for i in 0..40_000u64 {
            if i > 0 {
                doc.push(',');
            }
            doc.push_str(&format!(
                "{{\"id\":{i},\"name\":\"item \\\"{i}\\\"\",\"tags\":[\"a\",\"b\",{}],\"v\":{}.5}}",
                i % 7,
                i % 1000
            ));
            want += i % 1000;
        }
        doc.push(']');
        let doc = Arc::new(doc);
        let hs: Vec<_> = (0..8)
            .map(|_| {
                let doc = doc.clone();
                coroutines::spawn(move || {
                    let v: serde_json::Value = serde_json::from_str(&doc).unwrap();
                    let arr = v.as_array().unwrap();
                    let sum: f64 = arr.iter().map(|o| o["v"].as_f64().unwrap()).sum();
                    let back = serde_json::to_string(&v).unwrap();
                    let again: serde_json::Value = serde_json::from_str(&back).unwrap();
                    assert!(again == v);
                    (arr.len(), sum)
                })
            })
            .collect();
        let re = Arc::new(regex::Regex::new(r"client (\d+) line (\d+)\b").unwrap());
        let rs: Vec<_> = (0..100u64)
            .map(|i| {
                let re = re.clone();
                coroutines::spawn(move || {
                    let hay: String = (0..300)
                        .map(|k| format!("noise {k} client {i} line {k} trailing\n"))
                        .collect();
                    let mut n = 0;
                    for c in re.captures_iter(&hay) {
                        assert_eq!(c[1].parse::<u64>().unwrap(), i);
                        n += 1;
                        if n % 100 == 0 {
                            coroutines::yield_now();
                        }
                    }
                    let own = regex::Regex::new(&format!(r"^noise (\d+) client {i} ")).unwrap();
                    n + hay.lines().filter(|l| own.is_match(l)).count()
                })
            })
            .collect();
        for (len, sum) in join_all(hs) {
            assert_eq!(len, 40_000);
            assert_eq!(sum, want as f64 + 0.5 * 40_000.0);
        }
        assert!(join_all(rs).iter().all(|&n| n == 600));
        stop.store(true, Ordering::SeqCst);
        join_all(hogs);
    });
}

/// Deep recursion that uses most of a 256 KiB stack (frames of ~1 KiB,
/// 200 deep) in 50 coroutines under preemption: no false overflow, the
/// results exact.
#[test]
fn deep_recursion_near_stack_size() {
    in_children("deep_recursion_near_stack_size", || {
        #[inline(never)]
        fn rec(n: u64) -> u64 {
            let buf = std::hint::black_box([n as u8; 1000]);
            if n == 0 {
                return buf[3] as u64;
            }
            let r = rec(n - 1);
            std::hint::black_box(&buf);
            r + n + buf[0] as u64 - (n as u8) as u64
        }
        let hs: Vec<_> = (0..50).map(|_| coroutines::spawn(|| rec(200))).collect();
        assert!(join_all(hs).iter().all(|&r| r == 200 * 201 / 2));
    });
}

/// Thread-local destructors that block, as real ones do (a buffered
/// writer flushing into a socket, a guard joining its OS thread, a cache
/// taking a contended lock): they run at coroutine exit and must be able to
/// wait. One executor, so a destructor blocking its executor would hang.
#[test]
fn blocking_thread_local_destructors() {
    if std::env::var_os(CHILD).is_none() {
        for env in [
            &[("COROUTINES_WORKERS", "1"), ("COROUTINES_MAX_WORKERS", "1")][..],
            &[("COROUTINES_WORKERS", "2"), ("COROUTINES_SLICE", "100us")][..],
        ] {
            common::in_child(
                CHILD,
                "blocking_thread_local_destructors",
                env,
                Duration::from_secs(60),
                || (),
            );
        }
        return;
    }
    use std::net::{TcpListener, TcpStream};
    static LOCK: Mutex<u64> = Mutex::new(0);
    struct Flusher(
        Option<std::io::BufWriter<TcpStream>>,
        Option<std::thread::JoinHandle<u64>>,
    );
    impl Drop for Flusher {
        fn drop(&mut self) {
            if let Some(mut w) = self.0.take() {
                w.flush().unwrap();
            }
            if let Some(t) = self.1.take() {
                let v = t.join().unwrap();
                *LOCK.lock().unwrap() += v;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    thread_local! {
        static F: std::cell::RefCell<Flusher> = const { std::cell::RefCell::new(Flusher(None, None)) };
    }
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    const N: usize = 20;
    let sink = coroutines::spawn(move || {
        let mut total = 0;
        let mut hs = Vec::new();
        for _ in 0..N {
            let (mut s, _) = l.accept().unwrap();
            hs.push(coroutines::spawn(move || {
                let mut v = Vec::new();
                s.read_to_end(&mut v).unwrap();
                v.len()
            }));
        }
        for h in hs {
            total += h.join().unwrap();
        }
        total
    });
    // The lock is held while the destructors want it.
    let holder = coroutines::spawn(|| {
        let g = LOCK.lock().unwrap();
        std::thread::sleep(Duration::from_millis(100));
        drop(g);
    });
    let hs: Vec<_> = (0..N)
        .map(|_| {
            coroutines::spawn(move || {
                let s = TcpStream::connect(addr).unwrap();
                F.with(|f| {
                    let mut f = f.borrow_mut();
                    let mut w = std::io::BufWriter::with_capacity(1 << 20, s);
                    w.write_all(&vec![7u8; 300_000]).unwrap();
                    f.0 = Some(w);
                    f.1 = Some(std::thread::spawn(|| {
                        std::thread::sleep(Duration::from_millis(30));
                        1
                    }));
                });
            })
        })
        .collect();
    join_all(hs);
    holder.join().unwrap();
    assert_eq!(*LOCK.lock().unwrap(), N as u64);
    assert_eq!(sink.join().unwrap(), N * 300_000);
}

/// `std::process::exit` from a coroutine while others run and sleep: the
/// process exits with that code, stdout flushed, no crash.
#[test]
fn process_exit_from_coroutine() {
    if std::env::var_os(CHILD).is_some() {
        for _ in 0..4 {
            coroutines::spawn(|| loop {
                std::hint::black_box(0u64);
            });
            coroutines::spawn(|| loop {
                std::thread::sleep(Duration::from_micros(300));
            });
        }
        thread_local! {
            static D: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(vec![1]);
        }
        coroutines::spawn(|| {
            D.with(|d| d.borrow_mut().push(2));
            std::thread::sleep(Duration::from_millis(50));
            print!("about to exit");
            std::process::exit(42);
        })
        .join()
        .unwrap();
        unreachable!();
    }
    for slice in ["2ms", "100us"] {
        let mut cmd = std::process::Command::new(std::env::current_exe().unwrap());
        cmd.args([
            "process_exit_from_coroutine",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD, "1")
        .env("COROUTINES_WORKERS", "2")
        .env("COROUTINES_SLICE", slice);
        let out = common::output_with_deadline(cmd, Duration::from_secs(60));
        let (so, se) = common::text(&out);
        assert_eq!(out.status.code(), Some(42), "stdout:\n{so}\nstderr:\n{se}");
        assert!(so.contains("about to exit"), "stdout:\n{so}");
    }
}

/// `stacker::maybe_grow` (parsers and interpreters use it to recurse
/// deeper than the thread's stack): it finds the stack's bounds with
/// `pthread_getattr_np(pthread_self())`. 8 coroutines recurse 20,000 deep
/// (~10 MB of frames) on the default 256 KiB stacks.
#[test]
fn stacker_maybe_grow_deep_recursion() {
    in_children("stacker_maybe_grow_deep_recursion", || {
        #[inline(never)]
        fn rec(n: u64) -> u64 {
            stacker::maybe_grow(32 * 1024, 1024 * 1024, || {
                let buf = std::hint::black_box([n as u8; 500]);
                if n == 0 {
                    return 0;
                }
                rec(n - 1) + 1 + (buf[7] as u64 - (n as u8) as u64)
            })
        }
        let hs: Vec<_> = (0..8)
            .map(|_| {
                coroutines::spawn(|| {
                    let rem = stacker::remaining_stack();
                    (rec(20_000), rem)
                })
            })
            .collect();
        for (r, rem) in join_all(hs) {
            assert_eq!(r, 20_000);
            let rem = rem.expect("stack bounds unknown");
            assert!(
                rem > 64 * 1024 && rem <= 300 * 1024,
                "remaining_stack() = {rem}"
            );
        }
    });
}

/// The "N acceptor threads" server: 4 coroutines accept on clones of one
/// listener and each serves its connection itself until EOF. 4 clients
/// connect at once and meet at a barrier after their first echo, so every
/// connection must be accepted while the others are still open (a wake-up
/// lost among the acceptors parked on one fd would hang here).
#[test]
fn acceptors_sharing_a_listener() {
    in_children("acceptors_sharing_a_listener", || {
        use std::net::{TcpListener, TcpStream};
        const N: usize = 4;
        for round in 0..20 {
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = l.local_addr().unwrap();
            let served = Arc::new(AtomicUsize::new(0));
            let acceptors: Vec<_> = (0..N)
                .map(|_| {
                    let l = l.try_clone().unwrap();
                    let served = served.clone();
                    coroutines::spawn(move || {
                        let (s, _) = l.accept().unwrap();
                        let mut w = s.try_clone().unwrap();
                        let mut r = BufReader::new(s);
                        let mut line = String::new();
                        while r.read_line(&mut line).unwrap() > 0 {
                            w.write_all(line.as_bytes()).unwrap();
                            line.clear();
                        }
                        served.fetch_add(1, Ordering::SeqCst);
                    })
                })
                .collect();
            let barrier = Arc::new(std::sync::Barrier::new(N));
            let clients: Vec<_> = (0..N)
                .map(|c| {
                    let barrier = barrier.clone();
                    coroutines::spawn(move || {
                        let s = TcpStream::connect(addr).unwrap();
                        let mut w = s.try_clone().unwrap();
                        let mut r = BufReader::new(s);
                        let mut line = String::new();
                        for k in 0..3 {
                            writeln!(w, "round {round} client {c} msg {k}").unwrap();
                            line.clear();
                            r.read_line(&mut line).unwrap();
                            assert_eq!(line, format!("round {round} client {c} msg {k}\n"));
                            if k == 0 {
                                barrier.wait();
                            }
                        }
                    })
                })
                .collect();
            join_all(clients);
            join_all(acceptors);
            assert_eq!(served.load(Ordering::SeqCst), N);
        }
    });
}

/// `Command` with `pre_exec` (std forks instead of using posix_spawn) from
/// 16 coroutines at once, and `output()` of 1 MB from each.
#[test]
fn command_pre_exec_fork_and_output() {
    in_children("command_pre_exec_fork_and_output", || {
        use std::os::unix::process::CommandExt;
        use std::process::Command;
        let hs: Vec<_> = (0..16)
            .map(|i| {
                coroutines::spawn(move || {
                    let mut cmd = Command::new("sh");
                    cmd.args(["-c", "echo $$ $(ps -o pgid= $$ 2>/dev/null || echo none); head -c 1000000 /dev/zero"]);
                    // SAFETY: setsid is async-signal-safe.
                    unsafe {
                        cmd.pre_exec(|| {
                            if libc::setsid() < 0 {
                                return Err(std::io::Error::last_os_error());
                            }
                            Ok(())
                        });
                    }
                    let out = cmd.output().unwrap();
                    assert!(out.status.success(), "{i}: {:?}", out);
                    let nl = out.stdout.iter().position(|&b| b == b'\n').unwrap();
                    let first = String::from_utf8_lossy(&out.stdout[..nl]).to_string();
                    let mut it = first.split_whitespace();
                    let pid = it.next().unwrap().to_string();
                    if let Some(pgid) = it.next() {
                        if pgid != "none" {
                            assert_eq!(pgid, pid, "setsid did not run in the child");
                        }
                    }
                    out.stdout.len() - nl - 1
                })
            })
            .collect();
        assert!(join_all(hs).iter().all(|&n| n == 1_000_000));
    });
}

/// inetd/CGI style: a coroutine reads a request line from a connection
/// (the runtime makes the socket non-blocking), then hands the connection
/// to a child process as its stdin and stdout — through posix_spawn's
/// dup2 actions, and through std's fork path (`pre_exec`: the child's own
/// `dup2` onto 0 and 1). The child's blocking reads must block, not fail
/// with EAGAIN.
#[test]
fn socket_handed_to_child() {
    in_children("socket_handed_to_child", || {
        use std::net::{TcpListener, TcpStream};
        use std::os::fd::OwnedFd;
        use std::os::unix::process::CommandExt;
        use std::process::{Command, Stdio};
        for fork in [false, true] {
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = l.local_addr().unwrap();
            let srv = coroutines::spawn(move || {
                let (mut s, _) = l.accept().unwrap();
                let mut b = [0u8; 4];
                s.read_exact(&mut b).unwrap();
                assert_eq!(&b, b"cat\n");
                let out: OwnedFd = s.try_clone().unwrap().into();
                let inp: OwnedFd = s.into();
                let mut cmd = Command::new("cat");
                cmd.stdin(Stdio::from(inp)).stdout(Stdio::from(out));
                if fork {
                    // SAFETY: an empty pre_exec closure (async-signal-safe).
                    unsafe { cmd.pre_exec(|| Ok(())) };
                }
                cmd.status().unwrap().success()
            });
            let mut c = TcpStream::connect(addr).unwrap();
            c.write_all(b"cat\n").unwrap();
            // The child is started and waits in its read by now (usually).
            std::thread::sleep(Duration::from_millis(100));
            c.write_all(b"hello\n").unwrap();
            let mut r = BufReader::new(c.try_clone().unwrap());
            let mut line = String::new();
            r.read_line(&mut line).unwrap();
            assert_eq!(line, "hello\n", "fork={fork}");
            c.shutdown(std::net::Shutdown::Write).unwrap();
            assert!(srv.join().unwrap(), "the child failed (fork={fork})");
        }
    });
}

/// std's fork path (`pre_exec`) `dup2`s the child's stdio in the child,
/// through the hook, which takes the fd bookkeeping's group lock. Two
/// plain threads keep taking that lock (`try_clone` of a socket) while 8
/// coroutines fork-exec 60 children each: no child may hang on a lock
/// held at fork time by a thread it does not have.
#[test]
fn fork_children_while_threads_clone_fds() {
    in_children("fork_children_while_threads_clone_fds", || {
        use std::os::unix::process::CommandExt;
        use std::process::{Command, Stdio};
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let cloners: Vec<_> = (0..2)
            .map(|_| {
                let l = l.try_clone().unwrap();
                let stop = stop.clone();
                std::thread::spawn(move || {
                    let mut n = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        drop(l.try_clone().unwrap());
                        n += 1;
                    }
                    n
                })
            })
            .collect();
        let hs: Vec<_> = (0..8)
            .map(|_| {
                coroutines::spawn(|| {
                    for _ in 0..60 {
                        let mut cmd = Command::new("true");
                        cmd.stdin(Stdio::null())
                            .stdout(Stdio::piped())
                            .stderr(Stdio::piped());
                        // SAFETY: an empty pre_exec closure.
                        unsafe { cmd.pre_exec(|| Ok(())) };
                        assert!(cmd.output().unwrap().status.success());
                    }
                })
            })
            .collect();
        join_all(hs);
        stop.store(true, Ordering::Relaxed);
        for c in cloners {
            assert!(c.join().unwrap() > 0);
        }
    });
}

/// A TCP proxy as written with threads: per connection two coroutines
/// `std::io::copy` between the client and the upstream (through
/// `try_clone`d halves), each shutting down the other side's write half
/// when its copy ends. 30 clients send 300 KB each through it to an echo
/// server and read it all back.
#[test]
fn tcp_proxy_with_io_copy() {
    in_children("tcp_proxy_with_io_copy", || {
        use std::net::{Shutdown, TcpListener, TcpStream};
        const CLIENTS: usize = 30;
        let echo = TcpListener::bind("127.0.0.1:0").unwrap();
        let echo_addr = echo.local_addr().unwrap();
        let echo_srv = coroutines::spawn(move || {
            let hs: Vec<_> = (0..CLIENTS)
                .map(|_| {
                    let (s, _) = echo.accept().unwrap();
                    coroutines::spawn(move || {
                        let mut w = s.try_clone().unwrap();
                        let mut r = s;
                        let n = std::io::copy(&mut r, &mut w).unwrap();
                        w.shutdown(Shutdown::Write).unwrap();
                        n
                    })
                })
                .collect();
            join_all(hs).into_iter().sum::<u64>()
        });
        let proxy = TcpListener::bind("127.0.0.1:0").unwrap();
        let proxy_addr = proxy.local_addr().unwrap();
        let proxy_srv = coroutines::spawn(move || {
            let hs: Vec<_> = (0..CLIENTS)
                .map(|_| {
                    let (client, _) = proxy.accept().unwrap();
                    coroutines::spawn(move || {
                        let up = TcpStream::connect(echo_addr).unwrap();
                        let (mut c_r, mut c_w) = (client.try_clone().unwrap(), client);
                        let (mut u_r, mut u_w) = (up.try_clone().unwrap(), up);
                        let there = coroutines::spawn(move || {
                            let n = std::io::copy(&mut c_r, &mut u_w).unwrap();
                            u_w.shutdown(Shutdown::Write).unwrap();
                            n
                        });
                        let back = std::io::copy(&mut u_r, &mut c_w).unwrap();
                        c_w.shutdown(Shutdown::Write).unwrap();
                        there.join().unwrap() + back
                    })
                })
                .collect();
            join_all(hs).into_iter().sum::<u64>()
        });
        let clients: Vec<_> = (0..CLIENTS as u64)
            .map(|i| {
                coroutines::spawn(move || {
                    let data = corpus(i + 50, 300_000);
                    let s = TcpStream::connect(proxy_addr).unwrap();
                    let mut w = s.try_clone().unwrap();
                    let d2 = data.clone();
                    let sender = coroutines::spawn(move || {
                        w.write_all(&d2).unwrap();
                        w.shutdown(Shutdown::Write).unwrap();
                    });
                    let mut back = Vec::new();
                    let mut r = s;
                    r.read_to_end(&mut back).unwrap();
                    sender.join().unwrap();
                    back == data
                })
            })
            .collect();
        assert!(join_all(clients).iter().all(|&ok| ok));
        assert_eq!(echo_srv.join().unwrap(), CLIENTS as u64 * 300_000);
        assert_eq!(proxy_srv.join().unwrap(), 2 * CLIENTS as u64 * 300_000);
    });
}
