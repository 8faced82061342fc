//! Per-coroutine thread-local storage with the crates that rely on it:
//! tokio's `block_on` (its runtime context is a thread-local), rayon (its
//! per-thread latch), tracing (its span stack), plus the basics — values
//! per coroutine, destructors at exit, borrows across suspension points.
//!
//! Each test runs in a child process (the runtime is global per process)
//! with 2 executors and a watchdog: a hang fails the test.

mod common;

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const CHILD: &str = "COROUTINES_TLS_STRESS_CHILD";
const TWO: &[(&str, &str)] = &[("COROUTINES_WORKERS", "2")];

fn in_child(name: &str, env: &[(&str, &str)], body: impl FnOnce()) {
    common::in_child(CHILD, name, env, Duration::from_secs(90), body)
}

fn require_per_coroutine() {
    assert!(
        coroutines::ThreadLocals::per_coroutine_active(),
        "per-coroutine thread-locals are not active on this machine"
    );
}

/// Values start at their initial value in every coroutine, stay its own
/// across yields, sleeps and preemption, and its destructors run before
/// `join` returns (count exact).
#[test]
fn values_per_coroutine_and_destructors_at_exit() {
    in_child(
        "values_per_coroutine_and_destructors_at_exit",
        &[("COROUTINES_WORKERS", "2"), ("COROUTINES_SLICE", "100us")],
        || {
            static DROPPED: AtomicUsize = AtomicUsize::new(0);
            struct Counted(usize);
            impl Drop for Counted {
                fn drop(&mut self) {
                    DROPPED.fetch_add(self.0, Ordering::SeqCst);
                }
            }
            thread_local! {
                static N: Cell<usize> = const { Cell::new(0) };
                static S: RefCell<String> = RefCell::new(String::from("init"));
                static D: RefCell<Option<Counted>> = const { RefCell::new(None) };
            }
            coroutines::spawn(|| ()).join().unwrap(); // start the runtime
            require_per_coroutine();
            let handles: Vec<_> = (1..=200usize)
                .map(|i| {
                    coroutines::spawn(move || {
                        assert_eq!(N.get(), 0, "a coroutine saw a sibling's value");
                        assert_eq!(S.with(|s| s.borrow().clone()), "init");
                        N.set(i);
                        S.with(|s| s.borrow_mut().push_str(&i.to_string()));
                        D.with(|d| *d.borrow_mut() = Some(Counted(i)));
                        for round in 0..20 {
                            if round % 2 == 0 {
                                coroutines::yield_now();
                            } else {
                                std::thread::sleep(Duration::from_micros(200));
                            }
                            // Some CPU so preemption lands in between.
                            let mut x = 0u64;
                            for k in 0..20_000u64 {
                                x = x.wrapping_mul(31).wrapping_add(k);
                            }
                            std::hint::black_box(x);
                            assert_eq!(N.get(), i);
                        }
                        S.with(|s| assert_eq!(*s.borrow(), format!("init{i}")));
                        std::thread::current().id()
                    })
                })
                .collect();
            let mut ids = std::collections::HashSet::new();
            for h in handles {
                ids.insert(h.join().unwrap());
            }
            // Every destructor ran before its join returned.
            assert_eq!(DROPPED.load(Ordering::SeqCst), (1..=200).sum::<usize>());
            assert_eq!(ids.len(), 200, "std::thread::current() is per coroutine");
        },
    );
}

/// A `RefCell` borrow of a thread-local held across blocking calls and
/// yields while 2 executors run many such coroutines: no sibling ever sees
/// the borrow (with shared thread-locals, `borrow_mut` would panic).
#[test]
fn refcell_borrow_held_across_suspension() {
    in_child("refcell_borrow_held_across_suspension", TWO, || {
        thread_local! {
            static BUF: RefCell<Vec<u64>> = const { RefCell::new(Vec::new()) };
            static RC: Rc<Cell<u64>> = Rc::new(Cell::new(0));
        }
        let handles: Vec<_> = (0..64u64)
            .map(|i| {
                coroutines::spawn(move || {
                    BUF.with(|b| {
                        let mut b = b.borrow_mut(); // held across every wait below
                        for k in 0..10 {
                            b.push(i * 100 + k);
                            std::thread::sleep(Duration::from_millis(1));
                            coroutines::yield_now();
                        }
                        let rc = RC.with(|r| r.clone());
                        rc.set(rc.get() + b.iter().sum::<u64>());
                        // The thread-local `Rc` is this coroutine's own:
                        // the clone reads what was just set through it.
                        assert_eq!(RC.with(|r| r.get()), rc.get());
                        b.len() as u64 + rc.get()
                    })
                })
            })
            .collect();
        for (i, h) in handles.into_iter().enumerate() {
            let i = i as u64;
            let want: u64 = (0..10).map(|k| i * 100 + k).sum::<u64>() + 10;
            assert_eq!(h.join().unwrap(), want);
        }
    });
}

/// `Rc` and `RefCell` thread-locals used across yields while coroutines
/// move between executors under a 100 µs slice (migration on).
#[test]
fn rc_refcell_across_migration() {
    in_child(
        "rc_refcell_across_migration",
        &[
            ("COROUTINES_WORKERS", "2"),
            ("COROUTINES_SLICE", "100us"),
            ("COROUTINES_MIGRATE", "1"),
        ],
        || {
            thread_local! {
                static SHARED: Rc<RefCell<Vec<usize>>> = Rc::new(RefCell::new(Vec::new()));
            }
            let moved = Arc::new(AtomicUsize::new(0));
            let handles: Vec<_> = (0..32usize)
                .map(|i| {
                    let moved = moved.clone();
                    coroutines::spawn(move || {
                        let mine = SHARED.with(|s| s.clone());
                        let mut tid = coroutines::stats().workers; // dummy init
                        let _ = &mut tid;
                        let mut last = gettid();
                        for k in 0..200 {
                            mine.borrow_mut().push(i * 1000 + k);
                            let mut x = 0u64;
                            for j in 0..5_000u64 {
                                x = x.wrapping_add(j * j);
                            }
                            std::hint::black_box(x);
                            coroutines::yield_now();
                            let now = gettid();
                            if now != last {
                                moved.fetch_add(1, Ordering::Relaxed);
                                last = now;
                            }
                            // Same Rc as before, wherever we run now.
                            assert!(Rc::ptr_eq(&mine, &SHARED.with(|s| s.clone())));
                        }
                        let v = mine.borrow();
                        assert_eq!(v.len(), 200);
                        assert!(v.iter().enumerate().all(|(k, &x)| x == i * 1000 + k));
                        Rc::strong_count(&mine)
                    })
                })
                .collect();
            for h in handles {
                assert_eq!(h.join().unwrap(), 2, "the Rc is the coroutine's own");
            }
            println!("moves between executors: {}", moved.load(Ordering::Relaxed));
        },
    );
}

fn gettid() -> i64 {
    // SAFETY: gettid has no arguments and cannot fail.
    unsafe { libc::syscall(libc::SYS_gettid) }
}

/// tokio's current-thread `block_on` in 50 coroutines at once on 2
/// executors (what the sync `postgres` client does in every call): each
/// echoes over tokio TCP against a std listener served by coroutines and
/// sleeps on tokio timers, all overlapping.
#[test]
fn tokio_block_on_in_50_coroutines() {
    in_child("tokio_block_on_in_50_coroutines", TWO, || {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = coroutines::spawn(move || {
            let mut served = Vec::new();
            for _ in 0..50 {
                let (mut s, _) = listener.accept().unwrap();
                served.push(coroutines::spawn(move || {
                    let mut buf = [0u8; 64];
                    loop {
                        let n = s.read(&mut buf).unwrap();
                        if n == 0 {
                            break;
                        }
                        s.write_all(&buf[..n]).unwrap();
                    }
                }));
            }
            for h in served {
                h.join().unwrap();
            }
        });
        let started = Arc::new(std::sync::Barrier::new(50));
        let clients: Vec<_> = (0..50u32)
            .map(|i| {
                let started = started.clone();
                coroutines::spawn(move || {
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .unwrap();
                    rt.block_on(async move {
                        use tokio::io::{AsyncReadExt, AsyncWriteExt};
                        // All 50 are inside block_on before any goes on.
                        started.wait();
                        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
                        let mut total = 0u32;
                        for round in 0..5u32 {
                            tokio::time::sleep(Duration::from_millis(2)).await;
                            let msg = format!("{i}:{round};");
                            s.write_all(msg.as_bytes()).await.unwrap();
                            let mut back = vec![0u8; msg.len()];
                            s.read_exact(&mut back).await.unwrap();
                            assert_eq!(back, msg.as_bytes());
                            total += round;
                        }
                        // A task spawned on this coroutine's runtime runs.
                        total + tokio::spawn(async move { i }).await.unwrap()
                    })
                })
            })
            .collect();
        for (i, h) in clients.into_iter().enumerate() {
            assert_eq!(h.join().expect("block_on panicked"), 10 + i as u32);
        }
        server.join().unwrap();
    });
}

/// rayon `par_iter` from 16 coroutines at once: rayon's per-thread latch
/// and worker state are thread-locals.
#[test]
fn rayon_par_iter_from_16_coroutines() {
    in_child("rayon_par_iter_from_16_coroutines", TWO, || {
        use rayon::prelude::*;
        let handles: Vec<_> = (0..16u64)
            .map(|i| {
                coroutines::spawn(move || {
                    let mut total = 0u64;
                    for round in 0..20u64 {
                        total += (0..10_000u64)
                            .into_par_iter()
                            .map(|x| x * i + round)
                            .sum::<u64>();
                    }
                    total
                })
            })
            .collect();
        for (i, h) in handles.into_iter().enumerate() {
            let i = i as u64;
            let want: u64 = (0..20u64)
                .map(|r| (0..10_000u64).map(|x| x * i + r).sum::<u64>())
                .sum();
            assert_eq!(h.join().unwrap(), want);
        }
    });
}

/// A writer collecting tracing's formatted lines.
#[derive(Clone, Default)]
struct Lines(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Lines {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// tracing spans entered across blocking calls in 32 coroutines: each log
/// line carries only its own coroutine's span (tracing-subscriber keeps
/// the span stack per thread).
#[test]
fn tracing_spans_per_coroutine() {
    in_child("tracing_spans_per_coroutine", TWO, || {
        let lines = Lines::default();
        let sink = lines.clone();
        tracing_subscriber::fmt()
            .with_writer(move || sink.clone())
            .with_ansi(false)
            .without_time()
            .init();
        let handles: Vec<_> = (0..32u32)
            .map(|i| {
                coroutines::spawn(move || {
                    let span = tracing::info_span!("job", id = i);
                    let _e = span.enter();
                    for step in 0..10u32 {
                        std::thread::sleep(Duration::from_millis(1)); // parks
                        tracing::info!(step, "work");
                        let cur = tracing::Span::current();
                        assert_eq!(cur.id(), span.id(), "a sibling's span is current");
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        let text = String::from_utf8(lines.0.lock().unwrap().clone()).unwrap();
        let mut per = std::collections::HashMap::<String, usize>::new();
        for line in text.lines() {
            // "INFO job{id=7}: thread_locals: work step=3"
            assert_eq!(line.matches("job{").count(), 1, "line has one span: {line}");
            let id = line
                .split("job{id=")
                .nth(1)
                .unwrap()
                .split('}')
                .next()
                .unwrap();
            *per.entry(id.to_string()).or_default() += 1;
        }
        assert_eq!(per.len(), 32);
        assert!(per.values().all(|&n| n == 10), "{per:?}");
    });
}
/// The result of a detached coroutine (its `JoinHandle` dropped) is dropped
/// before the coroutine's thread-locals are destroyed, as std does for a
/// detached thread: its `Drop` may still use a thread-local.
#[test]
fn detached_result_drop_may_use_thread_locals() {
    in_child("detached_result_drop_may_use_thread_locals", TWO, || {
        static SEEN: AtomicUsize = AtomicUsize::new(0);
        thread_local! {
            static LOG: RefCell<Vec<usize>> = const { RefCell::new(Vec::new()) };
        }
        struct Reports(usize);
        impl Drop for Reports {
            fn drop(&mut self) {
                // Panics ("during or after destruction") if LOG is gone.
                LOG.with(|l| l.borrow_mut().push(self.0));
                SEEN.fetch_add(1, Ordering::SeqCst);
            }
        }
        for i in 0..100 {
            drop(coroutines::spawn(move || {
                LOG.with(|l| l.borrow_mut().push(0)); // registers its destructor
                Reports(i)
            }));
        }
        let t = std::time::Instant::now();
        while SEEN.load(Ordering::SeqCst) < 100 && t.elapsed() < Duration::from_secs(30) {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(SEEN.load(Ordering::SeqCst), 100);
    });
}

/// `Builder::dedicated_thread`: the coroutine has an OS thread of its own
/// for its whole life (same thread id across sleeps and yields, never the
/// executor), blocks only that thread, keeps its own thread-locals, and
/// joins like any coroutine. One executor and no extra ones: if it ran on
/// the executor, its blocking read would stop the 100 spawns that must
/// finish before anything writes to the pipe (a hang, killed by the
/// watchdog).
#[test]
fn dedicated_thread_is_exclusive() {
    in_child(
        "dedicated_thread_is_exclusive",
        &[("COROUTINES_WORKERS", "1"), ("COROUTINES_MAX_WORKERS", "1")],
        || {
            thread_local! {
                static MINE: Cell<u64> = const { Cell::new(0) };
            }
            let mut fds = [0i32; 2];
            // SAFETY: a fresh pipe; both ends are closed below.
            assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
            let (rd, wr) = (fds[0], fds[1]);
            let executor_tid = coroutines::spawn(gettid).join().unwrap();
            let h = coroutines::Builder::new()
                .name("pinned".into())
                .dedicated_thread()
                .spawn(move || {
                    let tid = gettid();
                    MINE.set(7);
                    for _ in 0..20 {
                        std::thread::sleep(Duration::from_millis(1));
                        coroutines::yield_now();
                        assert_eq!(gettid(), tid, "left its thread");
                    }
                    // A read nothing parks (raw system call): blocks this
                    // thread until the test writes.
                    let mut b = [0u8; 1];
                    // SAFETY: reads one byte into `b` from our pipe.
                    let n = unsafe { libc::syscall(libc::SYS_read, rd, b.as_mut_ptr(), 1) };
                    (
                        tid,
                        MINE.get(),
                        n,
                        std::thread::current().name().map(String::from),
                    )
                })
                .unwrap();
            // The executor keeps serving coroutines meanwhile.
            let n: u64 = (0..100u64)
                .map(|i| coroutines::spawn(move || i).join().unwrap())
                .sum();
            assert_eq!(n, 4950);
            // SAFETY: writes one byte to our pipe.
            assert_eq!(unsafe { libc::write(wr, b"x".as_ptr().cast(), 1) }, 1);
            let (tid, v, read, name) = h.join().unwrap();
            assert_eq!(read, 1);
            assert_ne!(tid, executor_tid);
            assert_ne!(tid, gettid());
            assert_eq!(v, 7);
            assert_eq!(name.as_deref(), Some("pinned"));
            // SAFETY: our pipe's ends, closed once.
            unsafe {
                libc::close(rd);
                libc::close(wr);
            }
        },
    );
}

/// 10,000 coroutines alive at once, each inside its own tracing span
/// across a sleep: tracing-subscriber's registry (sharded_slab) has room
/// for 4,096 live thread ids, so with one id per coroutine it panics;
/// the runtime pools those ids (a parked coroutine lends its id unless it
/// is inside the library). Every line carries its own span. Fails without
/// the pool: sharded_slab panics at the 4,097th id.
#[test]
fn ten_thousand_live_coroutines_in_tracing_spans() {
    in_child("ten_thousand_live_coroutines_in_tracing_spans", TWO, || {
        coroutines::spawn(|| ()).join().unwrap(); // start the runtime
        require_per_coroutine();
        const N: u32 = 10_000;
        let lines = Lines::default();
        let sink = lines.clone();
        tracing_subscriber::fmt()
            .with_writer(move || sink.clone())
            .with_ansi(false)
            .without_time()
            .init();
        let started = Arc::new(AtomicUsize::new(0));
        let handles: Vec<_> = (0..N)
            .map(|i| {
                let started = started.clone();
                coroutines::Builder::new()
                    .stack_size(64 * 1024)
                    .spawn(move || {
                        let span = tracing::info_span!("job", id = i);
                        let _e = span.enter();
                        started.fetch_add(1, Ordering::SeqCst);
                        // All alive together: wait until every one is in
                        // its span (bounded: a watchdog kills a hang).
                        while started.load(Ordering::SeqCst) < N as usize {
                            std::thread::sleep(Duration::from_millis(5));
                        }
                        // Child spans opened and closed across parks
                        // (the registry frees them on the way).
                        for round in 0..3u32 {
                            let child = tracing::info_span!("step", round);
                            let _c = child.enter();
                            std::thread::sleep(Duration::from_millis(1));
                            assert_eq!(tracing::Span::current().id(), child.id());
                        }
                        tracing::info!("work");
                        assert_eq!(tracing::Span::current().id(), span.id());
                    })
                    .unwrap()
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        let text = String::from_utf8(lines.0.lock().unwrap().clone()).unwrap();
        let mut seen = std::collections::HashSet::new();
        for line in text.lines() {
            assert_eq!(line.matches("job{").count(), 1, "line has one span: {line}");
            let id: u32 = line
                .split("job{id=")
                .nth(1)
                .unwrap()
                .split('}')
                .next()
                .unwrap()
                .parse()
                .unwrap();
            assert!(seen.insert(id), "span {id} logged twice");
        }
        assert_eq!(seen.len(), N as usize);
    });
}

/// Reused TLS blocks stay correct across a `dlopen` of a library with
/// thread-locals: before it, blocks are re-initialised from a snapshot of
/// what ld.so writes; the `dlopen` changes ld.so's TLS generation, so the
/// next reuse goes through `_dl_allocate_tls_init` again (and takes a new
/// snapshot). The library's (dynamic) thread-local starts at its initial
/// value in every coroutine, its block is freed at reuse, and Rust
/// thread-locals keep starting fresh. Its initial-exec thread-local lives
/// in the static TLS surplus, which only ld.so's initialisation (not an
/// out-of-date snapshot) fills in: every later coroutine must see its
/// initial value. The library is built with `cc` (the
/// test says so and passes if there is none).
#[test]
fn reused_blocks_across_dlopen_with_tls() {
    let dir = std::env::temp_dir().join(format!("coroutines-tls-dlopen-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let src = dir.join("tlsmod.c");
    let lib = dir.join("libtlsmod.so");
    std::fs::write(
        &src,
        "__thread long tls_counter = 7;\n\
         __thread char tls_pad[3000];\n\
         long tls_bump(void) { tls_pad[2999] += 1; return ++tls_counter + tls_pad[2999]; }\n\
         extern long ie_next(void);\n\
         long tls_ie_next(void) { return ie_next(); }\n",
    )
    .unwrap();
    // A dependency with initial-exec TLS (static TLS: small enough for
    // ld.so's surplus; one module's TLS is static or dynamic as a whole).
    let src_ie = dir.join("tlsie.c");
    std::fs::write(
        &src_ie,
        "__thread long ie_counter __attribute__((tls_model(\"initial-exec\"))) = 5;\n\
         long ie_next(void) { return ie_counter++; }\n",
    )
    .unwrap();
    let cc = |args: &[&std::ffi::OsStr]| {
        std::process::Command::new("cc")
            .args(["-O2", "-fPIC", "-shared"])
            .args(args)
            .status()
    };
    let lib_ie = dir.join("libtlsie.so");
    let built = cc(&["-o".as_ref(), lib_ie.as_ref(), src_ie.as_ref()]).and_then(|s| {
        if !s.success() {
            return Ok(s);
        }
        cc(&[
            "-o".as_ref(),
            lib.as_ref(),
            src.as_ref(),
            lib_ie.as_ref(),
            format!("-Wl,-rpath,{}", dir.display()).as_ref(),
        ])
    });
    if !matches!(built, Ok(s) if s.success()) {
        eprintln!("reused_blocks_across_dlopen_with_tls: no C compiler (cc): skipped");
        return;
    }
    let lib_path = lib.to_str().unwrap().to_string();
    in_child("reused_blocks_across_dlopen_with_tls", TWO, move || {
        thread_local! {
            static N: Cell<usize> = const { Cell::new(0) };
        }
        type F = extern "C" fn() -> i64;
        fn round(what: &'static str, bump: Option<(F, F)>) {
            for i in 0..300usize {
                coroutines::spawn(move || {
                    assert_eq!(N.get(), 0, "{what}: a reused block kept a value");
                    N.set(i + 1);
                    if let Some((f, ie)) = bump {
                        assert_eq!(f(), 9, "{what}: the library's thread-local not fresh");
                        assert_eq!(f(), 11);
                        assert_eq!(ie(), 5, "{what}: the static-TLS image not laid in");
                        assert_eq!(ie(), 6);
                    }
                })
                .join()
                .unwrap();
            }
        }
        coroutines::run(move || {
            require_per_coroutine();
            round("before dlopen", None);
            let c = std::ffi::CString::new(lib_path.clone()).unwrap();
            // SAFETY: a library of ours with no constructors.
            let h = unsafe { libc::dlopen(c.as_ptr(), libc::RTLD_NOW) };
            assert!(!h.is_null(), "dlopen failed: {:?}", unsafe {
                // SAFETY: dlerror's message, valid until the next dl call.
                std::ffi::CStr::from_ptr(libc::dlerror())
            });
            // SAFETY: the symbols are ours, `long f(void)`.
            let bump = unsafe {
                let f = |n: &std::ffi::CStr| {
                    let p = libc::dlsym(h, n.as_ptr());
                    assert!(!p.is_null());
                    std::mem::transmute::<*mut libc::c_void, F>(p)
                };
                (f(c"tls_bump"), f(c"tls_ie_next"))
            };
            round("after dlopen", Some(bump));
            // Many more: the library's blocks (3 KB each) must be freed
            // at reuse, and every coroutine sees fresh values.
            for _ in 0..10 {
                round("after dlopen, again", Some(bump));
            }
            // SAFETY: no coroutine uses the library any more.
            assert_eq!(unsafe { libc::dlclose(h) }, 0);
            round("after dlclose", None);
        });
    });
    let _ = std::fs::remove_dir_all(&dir);
}

/// Bytes glibc malloc holds for the program now (`mallinfo2`'s `uordblks`,
/// summed by glibc over every arena; chunks parked in a thread cache count
/// as in use).
fn malloc_in_use() -> usize {
    // SAFETY: mallinfo2 takes no arguments and returns a plain struct.
    unsafe { libc::mallinfo2() }.uordblks
}

/// A group of coroutines running `churn_until_preempted`: `running` counts
/// those still busy (others may count in it too), `started` the churners
/// that began, out of `churners`.
struct Churn {
    running: AtomicUsize,
    started: AtomicUsize,
    churners: usize,
}

impl Churn {
    fn new(running: usize, churners: usize) -> Arc<Churn> {
        Arc::new(Churn {
            running: AtomicUsize::new(running),
            started: AtomicUsize::new(0),
            churners,
        })
    }
}

/// Allocates and frees a mix of sizes (16 B to 1 KiB, up to 64 live at
/// once, each filled with its own pattern and checked before it is freed)
/// (at least one round of 256) until the calling coroutine has been
/// preempted `times` times since every churner of `group` started, or at
/// most
/// 2 of the coroutines counted in `group.running` (this one included) are left
/// (with nobody waiting, nobody is preempted); then leaves `running` and
/// returns the number of allocations. Panics on a chunk whose bytes
/// changed.
fn churn_until_preempted(seed: u64, times: u64, group: &Churn) -> u64 {
    let me = coroutines::current();
    group.started.fetch_add(1, Ordering::SeqCst);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut live: Vec<Vec<u8>> = Vec::with_capacity(64);
    let mut x = seed | 1;
    let mut n = 0u64;
    // Preemptions counted once every churner started: until then they
    // are preempted for coroutines that never ran, which gives no malloc
    // state of their own (sched/run.rs).
    let mut base = None;
    // At least one round: a preemption can land before the first (a
    // safe-point yield at the first hook's exit), and callers count rounds.
    loop {
        assert!(std::time::Instant::now() < deadline, "never preempted");
        for _ in 0..256 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let len = 16 + (x % 1009) as usize;
            let v = vec![(x & 0xff) as u8; len];
            if live.len() == 64 {
                let old = live.swap_remove((x >> 20) as usize % 64);
                assert!(old.iter().all(|&b| b == old[0]), "a chunk changed under us");
            }
            live.push(v);
            n += 1;
        }
        if base.is_none() && group.started.load(Ordering::SeqCst) >= group.churners {
            base = Some(me.preemptions());
        }
        let counted = base.map_or(0, |b| me.preemptions() - b);
        if counted >= times || group.running.load(Ordering::SeqCst) <= 2 {
            break;
        }
    }
    group.running.fetch_sub(1, Ordering::SeqCst);
    for v in live {
        assert!(v.iter().all(|&b| b == v[0]), "a chunk changed under us");
    }
    n
}

/// A preempted coroutine allocates from glibc malloc state of its own (a
/// thread cache and an arena, as a thread does), and gives its cache back
/// when it finishes: 8 rounds of 16 allocation-bound coroutines, each
/// preempted twice, leave glibc's bytes in use where the first round left
/// them. Without the give-back each finished coroutine kept its cache —
/// the cache structure and up to 7 chunks of each size it freed last.
#[test]
fn preempted_coroutines_get_own_malloc_state_and_give_it_back() {
    in_child(
        "preempted_coroutines_get_own_malloc_state_and_give_it_back",
        &[("COROUTINES_WORKERS", "2"), ("COROUTINES_SLICE", "1ms")],
        || {
            coroutines::spawn(|| ()).join().unwrap();
            require_per_coroutine();
            let round = |r: u64| {
                let running = Churn::new(16, 16);
                let hs: Vec<_> = (0..16u64)
                    .map(|i| {
                        let running = running.clone();
                        coroutines::spawn(move || churn_until_preempted(r * 100 + i, 2, &running))
                    })
                    .collect();
                hs.into_iter().map(|h| h.join().unwrap()).sum::<u64>()
            };
            let own0 = coroutines::stats().own_malloc;
            round(0);
            let after_first = malloc_in_use();
            let mut sizes = Vec::new();
            for r in 1..8 {
                assert!(round(r) > 0);
                sizes.push(malloc_in_use());
            }
            let own = coroutines::stats().own_malloc - own0;
            eprintln!("own malloc state given {own} times; in use after round 1: {after_first} B, then {sizes:?}");
            // (The last 2 of each round may finish unpreempted.)
            assert!(
                own >= 8 * 14,
                "only {own} of 128 coroutines got malloc state of their own"
            );
            let grown = sizes.last().unwrap().saturating_sub(after_first);
            assert!(
                grown < 1 << 20,
                "glibc's bytes in use grew by {grown} B over 7 rounds of 16 coroutines"
            );
        },
    );
}

/// Coroutines with malloc state of their own and without, mixed on 2
/// executors under a 200 µs slice, switching straight to each other
/// (yields and channel parks go coroutine to coroutine without the
/// scheduler): 24 workers that allocate between yields and now and then
/// run allocation-bound for longer than a slice (so they are preempted and
/// get their own state, then keep yielding), a ping-pong pair doing the
/// same, and 4 hogs. Every string built survives every switch intact and
/// glibc finds nothing wrong: a switch that handed one coroutine's cache
/// to a sibling would leave two executors allocating from one cache at
/// once.
#[test]
fn own_and_executor_malloc_state_mixed_with_direct_switches() {
    in_child(
        "own_and_executor_malloc_state_mixed_with_direct_switches",
        &[("COROUTINES_WORKERS", "2"), ("COROUTINES_SLICE", "200us")],
        || {
            coroutines::spawn(|| ()).join().unwrap();
            require_per_coroutine();
            /// About `n` × 1,000 allocations of 16 B to 1 KiB, checked.
            fn burst(seed: u64, n: u64) -> u64 {
                let mut x = seed | 1;
                let mut live: Vec<Vec<u8>> = Vec::with_capacity(32);
                for _ in 0..n * 1000 {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    let v = vec![(x & 0xff) as u8; 16 + (x % 1009) as usize];
                    if live.len() == 32 {
                        let old = live.swap_remove((x >> 20) as usize % 32);
                        assert!(old.iter().all(|&b| b == old[0]), "a chunk changed under us");
                    }
                    live.push(v);
                }
                x
            }
            let running = Churn::new(4 + 3, 4);
            let hogs: Vec<_> = (0..4u64)
                .map(|i| {
                    let running = running.clone();
                    coroutines::spawn(move || churn_until_preempted(i, 40, &running))
                })
                .collect();
            let workers: Vec<_> = (0..24u64)
                .map(|i| {
                    coroutines::spawn(move || {
                        let mut kept = Vec::new();
                        for k in 0..3000u64 {
                            let s = format!("{i}:{k}:{}", "x".repeat((k % 50) as usize));
                            if (k + i) % 25 == 0 {
                                burst(i * 10_000 + k, 2);
                            }
                            coroutines::yield_now();
                            assert!(s.starts_with(&format!("{i}:{k}:")), "{s}");
                            if k % 100 == 0 {
                                kept.push(s);
                            }
                        }
                        kept.len()
                    })
                })
                .collect();
            let (tx, rx) = std::sync::mpsc::channel::<String>();
            let (tx2, rx2) = std::sync::mpsc::channel::<String>();
            let ping = coroutines::spawn(move || {
                for k in 0..2000u64 {
                    tx.send(format!("ping {k}")).unwrap();
                    if k % 50 == 0 {
                        burst(k, 2);
                    }
                    assert_eq!(rx2.recv().unwrap(), format!("pong {k}"));
                }
            });
            let pong = coroutines::spawn(move || {
                for k in 0..2000u64 {
                    assert_eq!(rx.recv().unwrap(), format!("ping {k}"));
                    if k % 70 == 0 {
                        burst(k + 1, 2);
                    }
                    tx2.send(format!("pong {k}")).unwrap();
                }
            });
            for w in workers {
                assert_eq!(w.join().unwrap(), 30);
            }
            ping.join().unwrap();
            pong.join().unwrap();
            running.running.fetch_sub(3, Ordering::SeqCst); // the hogs may stop now
            for h in hogs {
                assert!(h.join().unwrap() > 0);
            }
            let own = coroutines::stats().own_malloc;
            eprintln!("own malloc state given {own} times");
            assert!(
                own >= 10,
                "only {own} coroutines got malloc state of their own"
            );
        },
    );
}

/// `COROUTINES_MALLOC_STATE=executor`: preempted coroutines keep their
/// executor's malloc state (none is given); a bad value is refused with
/// the accepted forms.
#[test]
fn malloc_state_executor_mode_and_bad_value() {
    in_child(
        "malloc_state_executor_mode_and_bad_value",
        &[
            ("COROUTINES_WORKERS", "2"),
            ("COROUTINES_SLICE", "1ms"),
            ("COROUTINES_MALLOC_STATE", "executor"),
        ],
        || {
            coroutines::spawn(|| ()).join().unwrap();
            require_per_coroutine();
            let running = Churn::new(4, 4);
            let hs: Vec<_> = (0..4u64)
                .map(|i| {
                    let running = running.clone();
                    coroutines::spawn(move || churn_until_preempted(i, 3, &running))
                })
                .collect();
            for h in hs {
                h.join().unwrap();
            }
            assert!(coroutines::stats().preemptions >= 6);
            assert_eq!(coroutines::stats().own_malloc, 0);
            std::env::set_var("COROUTINES_MALLOC_STATE", "per-thread");
            let e = coroutines::RuntimeBuilder::new()
                .resolve()
                .unwrap_err()
                .to_string();
            assert!(
                e.contains("COROUTINES_MALLOC_STATE") && e.contains("own-when-preempted"),
                "{e}"
            );
        },
    );
}

/// A parked coroutine holds no malloc cache: 200 allocation-bound
/// coroutines, each preempted (so given malloc state of its own), then
/// parked on a channel all at once. glibc's bytes in use while they are
/// all parked stay near where they were before (their caches went back to
/// the arenas at the park: +0.6 MB for 200); with the caches kept they
/// grew by 17 MB, 85 KB per coroutine (the churn leaves up to 7 chunks of
/// each size class).
#[test]
fn parked_coroutines_hold_no_malloc_cache() {
    in_child(
        "parked_coroutines_hold_no_malloc_cache",
        &[("COROUTINES_WORKERS", "2"), ("COROUTINES_SLICE", "1ms")],
        || {
            const N: usize = 200;
            coroutines::spawn(|| ()).join().unwrap();
            require_per_coroutine();
            let before = malloc_in_use();
            let running = Churn::new(N, N);
            let parked = Arc::new(AtomicUsize::new(0));
            let mut txs = Vec::new();
            let hs: Vec<_> = (0..N as u64)
                .map(|i| {
                    let (tx, rx) = std::sync::mpsc::channel::<()>();
                    txs.push(tx);
                    let (running, parked) = (running.clone(), parked.clone());
                    coroutines::spawn(move || {
                        let n = churn_until_preempted(i, 1, &running);
                        parked.fetch_add(1, Ordering::SeqCst);
                        rx.recv().unwrap();
                        n
                    })
                })
                .collect();
            while parked.load(Ordering::SeqCst) < N {
                std::thread::sleep(Duration::from_millis(5));
            }
            std::thread::sleep(Duration::from_millis(50));
            let during = malloc_in_use();
            let given = coroutines::stats().own_malloc;
            for tx in txs {
                tx.send(()).unwrap();
            }
            for h in hs {
                assert!(h.join().unwrap() > 0);
            }
            let grown = during.saturating_sub(before);
            eprintln!(
                "malloc state given {given} times; in use before {before} B, with {N} parked {during} B (+{grown})"
            );
            assert!(
                given as usize >= N - 2,
                "only {given} coroutines were given malloc state"
            );
            assert!(
                grown < N * 16 * 1024,
                "{N} parked coroutines hold {grown} B more than before: caches kept at the park"
            );
        },
    );
}

/// A coroutine preempted only because coroutines it spawned wait for
/// their first run keeps its executor's malloc state: a loop spawning
/// 50,000 coroutines (then joining them) is preempted again and again for
/// its own children, and with a cache and arena of its own it stopped
/// reusing the chunks the executors freed (bench W2a: 0.9x tokio's time
/// per spawn, 0.5-0.6x without). Checked: it was preempted, and no
/// coroutine was given malloc state of its own.
#[test]
fn preempted_for_new_coroutines_keeps_executor_malloc_state() {
    in_child(
        "preempted_for_new_coroutines_keeps_executor_malloc_state",
        // A 50 ms slice: new-work preemptions come after 10 ms, and a
        // whole slice (which does give malloc state) would need the
        // preemption delayed by 40 ms. With the default 10 ms slice a
        // loaded machine delayed one that long (2 ms -> 10 ms) once.
        &[("COROUTINES_WORKERS", "2"), ("COROUTINES_SLICE", "50ms")],
        || {
            coroutines::spawn(|| ()).join().unwrap();
            require_per_coroutine();
            let own0 = coroutines::stats().own_malloc;
            let (preempted, sum) = coroutines::spawn(|| {
                let me = coroutines::current();
                let t = std::time::Instant::now();
                let mut hs = Vec::new();
                let mut i = 0u64;
                // Long enough for several new-work preemptions (10 ms each).
                while me.preemptions() < 3 && t.elapsed() < Duration::from_secs(20) {
                    for _ in 0..1000 {
                        hs.push(coroutines::spawn(move || i * 2));
                        i += 1;
                    }
                }
                let sum: u64 = hs.into_iter().map(|h| h.join().unwrap()).sum();
                (me.preemptions(), sum == i * (i - 1))
            })
            .join()
            .unwrap();
            let own = coroutines::stats().own_malloc - own0;
            eprintln!("spawner preempted {preempted} times; malloc state given {own} times");
            assert!(sum, "a child's result was wrong");
            assert!(
                preempted >= 3,
                "the spawner was preempted only {preempted} times"
            );
            assert_eq!(
                own, 0,
                "a coroutine preempted for new coroutines got malloc state"
            );
        },
    );
}
