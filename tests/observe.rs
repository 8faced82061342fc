//! `coroutines::dump()`: each kind of wait is named with its detail, the
//! backtrace of a parked coroutine shows the user's function, lock cycles
//! are reported, and a dump of 100,000 parked coroutines works.

use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use coroutines::observe::{CoroutineInfo, State, Wait};

fn find<'a>(d: &'a coroutines::Dump, name: &str) -> &'a CoroutineInfo {
    d.coroutines()
        .iter()
        .find(|c| c.name.as_deref() == Some(name))
        .unwrap_or_else(|| panic!("no coroutine named {name} in the dump:\n{d}"))
}

/// Runs test `name` of this binary alone in a child process with `env`.
fn run_child(name: &str, env: &[(&str, &std::ffi::OsStr)]) -> std::process::Output {
    let mut cmd = std::process::Command::new(std::env::current_exe().unwrap());
    cmd.args(["--exact", name, "--nocapture", "--test-threads=1"]);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

/// `run_child`, asserting the child succeeded and printed `marker`;
/// returns its stdout and stderr.
fn run_child_ok(name: &str, env: &[(&str, &std::ffi::OsStr)], marker: &str) -> (String, String) {
    let out = run_child(name, env);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success() && stdout.contains(marker),
        "child {name} failed: {}\n{stdout}\n{stderr}",
        out.status
    );
    (stdout, stderr)
}

fn named<F: FnOnce() + Send + 'static>(name: &str, f: F) -> coroutines::JoinHandle<()> {
    coroutines::Builder::new()
        .name(name.into())
        .spawn(f)
        .unwrap()
}

/// Dumps until `ok` holds for the dump (the coroutines get there soon
/// after spawn; generous bound), returning the dump.
fn dump_until(ok: impl Fn(&coroutines::Dump) -> bool) -> coroutines::Dump {
    let t = Instant::now();
    loop {
        let d = coroutines::dump();
        if ok(&d) || t.elapsed() > Duration::from_secs(20) {
            return d;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn parked(d: &coroutines::Dump, name: &str) -> bool {
    d.coroutines()
        .iter()
        .any(|c| c.name.as_deref() == Some(name) && c.state == State::Parked)
}

#[inline(never)]
fn user_function_waiting_for_the_mutex(m: &Mutex<u32>) -> u32 {
    let g = m.lock().unwrap();
    std::hint::black_box(*g)
}

#[test]
fn dump_names_each_wait_with_its_detail() {
    // TCP read with a known peer.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let reader = named("tcp-reader", move || {
        let mut s = TcpStream::connect(addr).unwrap();
        let mut b = [0u8; 1];
        let _ = s.read(&mut b);
    });
    let (server_side, _) = listener.accept().unwrap();

    // std Mutex held by this thread.
    let m = Arc::new(Mutex::new(7u32));
    let guard = m.lock().unwrap();
    let m2 = m.clone();
    let mutex_waiter = named("mutex-waiter", move || {
        assert_eq!(user_function_waiting_for_the_mutex(&m2), 7);
    });

    // Condvar.
    let pair = Arc::new((Mutex::new(false), Condvar::new()));
    let p2 = pair.clone();
    let cv_waiter = named("condvar-waiter", move || {
        let (l, c) = &*p2;
        let mut ready = l.lock().unwrap();
        while !*ready {
            ready = c.wait(ready).unwrap();
        }
    });

    // mpsc receive.
    let (tx, rx) = mpsc::channel::<u32>();
    let receiver = named("mpsc-receiver", move || {
        assert_eq!(rx.recv().unwrap(), 1);
    });

    // Sleep.
    let sleeper = named("sleeper", || coroutines::sleep(Duration::from_secs(3)));

    // Join (of the mutex waiter).
    let joiner = named("joiner", move || mutex_waiter.join().unwrap());

    let names = [
        "tcp-reader",
        "mutex-waiter",
        "condvar-waiter",
        "mpsc-receiver",
        "sleeper",
        "joiner",
    ];
    let reading = |d: &coroutines::Dump| {
        d.coroutines().iter().any(|c| {
            c.name.as_deref() == Some("tcp-reader")
                && matches!(c.wait, Some(Wait::Io { write: false, .. }))
        })
    };
    let d = dump_until(|d| names.iter().all(|n| parked(d, n)) && reading(d));
    println!("{d}");

    let c = find(&d, "tcp-reader");
    match &c.wait {
        Some(Wait::Io {
            write: false,
            description,
            ..
        }) => {
            assert!(description.starts_with("TCP"), "{description}");
            assert!(
                description.contains(&addr.to_string()),
                "peer {addr} missing: {description}"
            );
        }
        w => panic!("tcp-reader: {w:?}\n{d}"),
    }

    let c = find(&d, "mutex-waiter");
    assert!(
        matches!(
            c.wait,
            Some(Wait::Futex {
                primitive: Some("std::sync::Mutex::lock"),
                ..
            })
        ),
        "mutex-waiter: {:?}\n{c}",
        c.wait
    );
    assert!(
        c.backtrace.iter().any(|f| f
            .symbol
            .as_deref()
            .is_some_and(|s| s.contains("user_function_waiting_for_the_mutex"))),
        "no frame of the user's function:\n{c}"
    );

    let c = find(&d, "condvar-waiter");
    assert!(
        matches!(
            c.wait,
            Some(Wait::Futex {
                primitive: Some("std::sync::Condvar::wait"),
                ..
            })
        ),
        "condvar-waiter: {:?}\n{c}",
        c.wait
    );

    let c = find(&d, "mpsc-receiver");
    assert!(
        matches!(
            c.wait,
            Some(Wait::ThreadParker {
                operation: Some("channel receive")
            })
        ),
        "mpsc-receiver: {:?}\n{c}",
        c.wait
    );

    let c = find(&d, "sleeper");
    match c.wait {
        Some(Wait::Sleep { remaining }) => {
            assert!(remaining > Duration::ZERO && remaining <= Duration::from_secs(3))
        }
        ref w => panic!("sleeper: {w:?}"),
    }

    let mw = find(&d, "mutex-waiter").id;
    let c = find(&d, "joiner");
    assert_eq!(c.wait, Some(Wait::Join { coroutine: mw }), "{c}");
    assert!(d.to_string().contains("join of #"), "{d}");

    // Release everything.
    drop(guard);
    {
        let (l, c) = &*pair;
        *l.lock().unwrap() = true;
        c.notify_all();
    }
    tx.send(1).unwrap();
    drop(server_side);
    for h in [reader, cv_waiter, receiver, sleeper, joiner] {
        h.join().unwrap();
    }
}

#[test]
fn never_run_and_running_states() {
    coroutines::spawn(|| {
        // A coroutine spawned from a coroutine waits in its executor's
        // unstealable `next` slot until the spawner gives the executor up:
        // until then it has never run.
        let me = coroutines::current().id();
        // In a no-preempt section: a preemption that came due meanwhile (on
        // a loaded machine a run can reach its slice before this point)
        // would give the executor up at the next hook's exit and let it run.
        let (h, d) = coroutines::no_preempt(|| {
            let h = named("never-run", || {});
            (
                h,
                coroutines::DumpOptions::new().backtraces(false).capture(),
            )
        });
        // Listed by id (a coroutine that has not suspended yet is not in
        // the registry: its name is not shown).
        let c = d
            .get(h.coroutine().id())
            .unwrap_or_else(|| panic!("not listed:\n{d}"));
        assert_eq!(c.state, State::NeverRun, "{d}");
        let mine = d.get(me).expect("the dumping coroutine is listed");
        assert!(matches!(mine.state, State::Running { .. }), "{mine}");
        h.join().unwrap();
    })
    .join()
    .unwrap();
}

/// An error-checking pthread mutex (its owner is tracked per coroutine by
/// the pthread hooks, as for recursive ones).
struct CheckedMutex(std::cell::UnsafeCell<libc::pthread_mutex_t>);
// SAFETY: pthread mutexes are made to be shared between threads.
unsafe impl Sync for CheckedMutex {}
// SAFETY: as above.
unsafe impl Send for CheckedMutex {}

impl CheckedMutex {
    fn new() -> Arc<Self> {
        let m = Arc::new(CheckedMutex(std::cell::UnsafeCell::new(
            libc::PTHREAD_MUTEX_INITIALIZER,
        )));
        // SAFETY: a fresh attribute object and mutex.
        unsafe {
            let mut a: libc::pthread_mutexattr_t = std::mem::zeroed();
            libc::pthread_mutexattr_init(&mut a);
            libc::pthread_mutexattr_settype(&mut a, libc::PTHREAD_MUTEX_ERRORCHECK);
            libc::pthread_mutex_init(m.0.get(), &a);
        }
        m
    }
}

#[test]
fn pthread_lock_cycle_is_reported_as_deadlock() {
    let m1 = CheckedMutex::new();
    let m2 = CheckedMutex::new();
    let both_locked = Arc::new(std::sync::Barrier::new(2));
    // Each locks its first mutex, then tries the other's with a timeout:
    // a lock-order deadlock that ends when the shorter timeout expires.
    let lock_then =
        |first: Arc<CheckedMutex>, second: Arc<CheckedMutex>, secs, b: Arc<std::sync::Barrier>| {
            move || {
                // SAFETY: valid, initialised mutexes; each is unlocked by the
                // coroutine that locked it.
                unsafe {
                    assert_eq!(libc::pthread_mutex_lock(first.0.get()), 0);
                    b.wait();
                    let mut ts: libc::timespec = std::mem::zeroed();
                    libc::clock_gettime(libc::CLOCK_REALTIME, &mut ts);
                    ts.tv_sec += secs;
                    let r = libc::pthread_mutex_timedlock(second.0.get(), &ts);
                    if r == 0 {
                        libc::pthread_mutex_unlock(second.0.get());
                    } else {
                        assert_eq!(r, libc::ETIMEDOUT);
                    }
                    libc::pthread_mutex_unlock(first.0.get());
                }
            }
        };
    let a = named(
        "lock-a",
        lock_then(m1.clone(), m2.clone(), 4, both_locked.clone()),
    );
    let b = named("lock-b", lock_then(m2.clone(), m1.clone(), 8, both_locked));
    let d = dump_until(|d| !d.deadlocks().is_empty());
    let ia = find(&d, "lock-a").id;
    let ib = find(&d, "lock-b").id;
    assert!(
        d.deadlocks()
            .iter()
            .any(|c| c.len() == 2 && c.contains(&ia) && c.contains(&ib)),
        "{d}"
    );
    assert!(d.to_string().contains("DEADLOCK"), "{d}");
    assert!(
        matches!(find(&d, "lock-a").wait, Some(Wait::Pthread { kind: "mutex", holder: Some(h), .. }) if h == ib),
        "{d}"
    );
    a.join().unwrap();
    b.join().unwrap();
}

#[test]
fn dump_of_100k_parked_coroutines() {
    const N: usize = 100_000;
    let stop = Arc::new(AtomicBool::new(false));
    let hs: Vec<_> = (0..N)
        .map(|_| {
            let stop = stop.clone();
            coroutines::spawn(move || {
                while !stop.load(Ordering::Acquire) {
                    coroutines::park();
                }
            })
        })
        .collect();
    let opts = coroutines::DumpOptions::new().backtraces(false);
    let count_parked = |d: &coroutines::Dump| {
        d.coroutines()
            .iter()
            .filter(|c| c.wait == Some(Wait::Park))
            .count()
    };
    let t = Instant::now();
    let mut d = opts.capture();
    while count_parked(&d) < N && t.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(50));
        d = opts.capture();
    }
    println!(
        "dump of {} coroutines ({} parked) took {:?}",
        d.coroutines().len(),
        count_parked(&d),
        d.took()
    );
    assert!(
        count_parked(&d) >= N,
        "only {} of {N} parked",
        count_parked(&d)
    );
    // Generous: the target (1 s) is checked by the benchmark, not here.
    assert!(d.took() < Duration::from_secs(30), "{:?}", d.took());
    stop.store(true, Ordering::Release);
    for h in &hs {
        h.coroutine().unpark();
    }
    for h in hs {
        h.join().unwrap();
    }
}

/// `COROUTINES_DUMP_SIGNAL=SIGUSR1`: the signal prints the dump to stderr
/// and the program goes on (run in a child: the variable is read at start).
#[test]
fn dump_on_signal_prints_and_continues() {
    if std::env::var_os("OBSERVE_SIGNAL_CHILD").is_some() {
        let h = named("waiting-for-the-signal", coroutines::park);
        std::thread::sleep(Duration::from_millis(100));
        // SAFETY: raising a signal the runtime installed a handler for.
        unsafe { libc::raise(libc::SIGUSR1) };
        std::thread::sleep(Duration::from_millis(500));
        // The program goes on: coroutines still run.
        assert_eq!(coroutines::spawn(|| 6 * 7).join().unwrap(), 42);
        h.coroutine().unpark();
        h.join().unwrap();
        println!("CHILD CONTINUED");
        return;
    }
    let (_, stderr) = run_child_ok(
        "dump_on_signal_prints_and_continues",
        &[
            ("OBSERVE_SIGNAL_CHILD", std::ffi::OsStr::new("1")),
            ("COROUTINES_DUMP_SIGNAL", std::ffi::OsStr::new("SIGUSR1")),
        ],
        "CHILD CONTINUED",
    );
    assert!(
        stderr.contains("coroutines dump:"),
        "no dump on stderr:\n{stderr}"
    );
    assert!(
        stderr.contains("'waiting-for-the-signal' [coroutines::park"),
        "the parked coroutine is not in the dump:\n{stderr}"
    );
}

/// A bad `COROUTINES_DUMP_SIGNAL` is a clear error at start.
#[test]
fn bad_dump_signal_is_an_error() {
    if std::env::var_os("OBSERVE_BAD_SIGNAL_CHILD").is_some() {
        let e = coroutines::Builder::new()
            .spawn(|| {})
            .expect_err("start must fail");
        println!("ERROR: {e}");
        return;
    }
    let out = run_child(
        "bad_dump_signal_is_an_error",
        &[
            ("OBSERVE_BAD_SIGNAL_CHILD", std::ffi::OsStr::new("1")),
            ("COROUTINES_DUMP_SIGNAL", std::ffi::OsStr::new("SIGKILL")),
        ],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("COROUTINES_DUMP_SIGNAL") && stdout.contains("SIGQUIT"),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A DNS lookup runs on a helper thread while its coroutine parks; the
/// dump names the host. To hold the lookup long enough, the child's
/// resolver reads its host aliases (`HOSTALIASES`, consulted for names
/// without a dot) from a FIFO that nobody writes until the dump is taken.
#[test]
fn dump_names_the_dns_lookup_on_a_helper() {
    if let Some(fifo) = std::env::var_os("OBSERVE_DNS_FIFO") {
        use std::net::ToSocketAddrs;
        let h = named("dns-lookup", || {
            let _ = ("observeddnsname", 80).to_socket_addrs();
        });
        let d = dump_until(|d| {
            d.coroutines().iter().any(|c| {
                c.name.as_deref() == Some("dns-lookup")
                    && matches!(c.wait, Some(Wait::Helper { .. }))
            })
        });
        // Let the resolver go on: every time it opens the FIFO (once per
        // query), open the write end (non-blocking: it succeeds only while
        // a reader is opening) and close it, so it reads an empty file.
        let done = Arc::new(AtomicBool::new(false));
        let done2 = done.clone();
        let writer = std::thread::spawn(move || {
            use std::os::unix::fs::OpenOptionsExt;
            while !done2.load(Ordering::Acquire) {
                drop(
                    std::fs::OpenOptions::new()
                        .write(true)
                        .custom_flags(libc::O_NONBLOCK)
                        .open(&fifo),
                );
                std::thread::sleep(Duration::from_millis(5));
            }
        });
        h.join().unwrap();
        done.store(true, Ordering::Release);
        writer.join().unwrap();
        let c = find(&d, "dns-lookup");
        println!("{c}");
        match &c.wait {
            Some(Wait::Helper { job }) => {
                assert!(job.contains("getaddrinfo(\"observeddnsname\")"), "{job}")
            }
            w => panic!("dns-lookup: {w:?}\n{d}"),
        }
        println!("CHILD OK");
        return;
    }
    // HOSTALIASES is read by glibc's DNS backend: a system whose name
    // service never asks DNS cannot hold the lookup this way.
    if let Ok(ns) = std::fs::read_to_string("/etc/nsswitch.conf") {
        let hosts = ns.lines().find(|l| l.trim_start().starts_with("hosts:"));
        if hosts.is_some_and(|l| !l.contains("dns")) {
            eprintln!("SKIPPED dump_names_the_dns_lookup_on_a_helper: /etc/nsswitch.conf has no dns in its hosts line");
            return;
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("aliases");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: a valid path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    run_child_ok(
        "dump_names_the_dns_lookup_on_a_helper",
        &[
            ("OBSERVE_DNS_FIFO", std::ffi::OsStr::new(&fifo)),
            ("HOSTALIASES", std::ffi::OsStr::new(&fifo)),
        ],
        "CHILD OK",
    );
}

/// Dumps taken continuously (with backtraces, from two threads) while
/// thousands of coroutines spawn, park, yield, migrate and finish: no
/// crash, every coroutine finishes, and once they are joined none of them
/// is listed any more (executors that found a registry shard busy defer
/// their update and retry it; the retries must all land).
#[test]
fn dumps_during_churn_leave_no_stale_entries() {
    let stop = Arc::new(AtomicBool::new(false));
    let dumpers: Vec<_> = (0..2)
        .map(|_| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    let d = coroutines::dump();
                    assert!(d.to_string().starts_with("coroutines dump:"));
                    n += 1;
                }
                n
            })
        })
        .collect();
    let hs: Vec<_> = (0..20_000)
        .map(|i| {
            named(&format!("churn-{i}"), move || {
                for k in 0..5 {
                    if (i + k) % 2 == 0 {
                        coroutines::yield_now();
                    } else {
                        coroutines::park_timeout(Duration::from_micros(200));
                    }
                }
            })
        })
        .collect();
    for h in hs {
        h.join().unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    let dumps: usize = dumpers.into_iter().map(|t| t.join().unwrap()).sum();
    assert!(dumps > 0);
    // Executors retry deferred registry updates from their loop: give them
    // a moment, then no churn coroutine may be left.
    let d = dump_until(|d| {
        !d.coroutines()
            .iter()
            .any(|c| c.name.as_deref().is_some_and(|n| n.starts_with("churn-")))
    });
    let left: Vec<_> = d
        .coroutines()
        .iter()
        .filter(|c| c.name.as_deref().is_some_and(|n| n.starts_with("churn-")))
        .collect();
    assert!(
        left.is_empty(),
        "{} finished coroutines still listed after {dumps} dumps:\n{d}",
        left.len()
    );
}

/// A CPU-bound coroutine's sampled CPU time and preemption count grow
/// (4 hogs on 2 executors take turns by preemption; in a child with no
/// extra executors, which the detector would otherwise start under
/// outside load, leaving nothing to preempt).
#[test]
fn cpu_time_and_preemptions_of_a_hog() {
    if std::env::var_os("OBSERVE_HOG_CHILD").is_none() {
        run_child_ok(
            "cpu_time_and_preemptions_of_a_hog",
            &[
                ("OBSERVE_HOG_CHILD", std::ffi::OsStr::new("1")),
                ("COROUTINES_WORKERS", std::ffi::OsStr::new("2")),
                ("COROUTINES_MAX_WORKERS", std::ffi::OsStr::new("2")),
            ],
            "CHILD OK",
        );
        return;
    }
    let spin = |ms: u64| {
        move || {
            let t = Instant::now();
            let mut x = 0u64;
            while t.elapsed() < Duration::from_millis(ms) {
                x = std::hint::black_box(x.wrapping_add(1));
            }
        }
    };
    let hs: Vec<_> = (0..4).map(|_| coroutines::spawn(spin(400))).collect();
    let handles: Vec<_> = hs.iter().map(|h| h.coroutine().clone()).collect();
    for h in hs {
        h.join().unwrap();
    }
    let cpu: Duration = handles.iter().map(|c| c.cpu_time()).sum();
    let pre: u64 = handles.iter().map(|c| c.preemptions()).sum();
    // At least one executor ran a hog for its whole 400 ms: a generous
    // lower bound for the sampled total; and hogs were preempted.
    assert!(cpu >= Duration::from_millis(200), "sampled cpu {cpu:?}");
    assert!(
        pre > 0,
        "no preemption counted: {:?}",
        coroutines::stats().preempt
    );
    println!("CHILD OK");
}

/// "Parked for" after the runtime was idle: the time a park is stamped
/// with must not be the monitor's last tick before everything slept (run
/// in a child: no other test may keep the executors busy).
#[test]
fn parked_for_is_fresh_after_an_idle_runtime() {
    if std::env::var_os("OBSERVE_IDLE_CHILD").is_some() {
        // The coroutine sleeps while every executor and the monitor sleep
        // too; its timer wakes an executor, and it parks again at once.
        let h = named("after-idle", || {
            coroutines::sleep(Duration::from_millis(1500));
            coroutines::sleep(Duration::from_secs(3));
        });
        std::thread::sleep(Duration::from_millis(1700));
        let d = coroutines::DumpOptions::new().backtraces(false).capture();
        let c = find(&d, "after-idle");
        let p = c.parked_for.expect("parked");
        assert!(
            p < Duration::from_millis(1000),
            "parked for {p:?} after 200 ms:\n{c}"
        );
        h.join().unwrap();
        println!("CHILD OK");
        return;
    }
    run_child_ok(
        "parked_for_is_fresh_after_an_idle_runtime",
        &[("OBSERVE_IDLE_CHILD", std::ffi::OsStr::new("1"))],
        "CHILD OK",
    );
}
