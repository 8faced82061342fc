//! Everything the runtime can tell about a running program, in one run:
//! a dump of every coroutine (wait reasons with their detail, backtraces,
//! a lock-order deadlock), the blocking report of an executor stuck in a
//! call nothing hooks, the schedule trace, and an execution trace file for
//! Perfetto.
//!
//! ```sh
//! cargo run --release --example observe            # writes observe-trace.json
//! COROUTINES_DUMP_SIGNAL=SIGQUIT cargo run --release --example observe -- --wait
//! #   then, from another terminal: kill -QUIT <pid>   (the program goes on)
//! ```

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{mpsc, Arc, Condvar, Mutex};
use std::time::Duration;

/// A lock-order deadlock between two coroutines on error-checking pthread
/// mutexes (C code's locks: the runtime knows their holders).
struct PMutex(std::cell::UnsafeCell<libc::pthread_mutex_t>);
// SAFETY: pthread mutexes are made to be shared between threads.
unsafe impl Sync for PMutex {}
// SAFETY: as above.
unsafe impl Send for PMutex {}

impl PMutex {
    fn new() -> Arc<Self> {
        let m = Arc::new(PMutex(std::cell::UnsafeCell::new(
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

fn transfer(from: Arc<PMutex>, to: Arc<PMutex>, ready: Arc<std::sync::Barrier>) {
    // SAFETY: initialised mutexes, each unlocked by the coroutine that
    // locked it; the timed lock ends the deadlock after 2 s.
    unsafe {
        libc::pthread_mutex_lock(from.0.get());
        ready.wait();
        let mut ts: libc::timespec = std::mem::zeroed();
        libc::clock_gettime(libc::CLOCK_REALTIME, &mut ts);
        ts.tv_sec += 2;
        if libc::pthread_mutex_timedlock(to.0.get(), &ts) == 0 {
            libc::pthread_mutex_unlock(to.0.get());
        }
        libc::pthread_mutex_unlock(from.0.get());
    }
}

#[inline(never)]
fn wait_for_the_config_lock(m: &Mutex<u32>) -> u32 {
    *m.lock().unwrap()
}

#[inline(never)]
fn call_a_c_library_that_blocks() {
    // Some work first (a coroutine is named in the blocking report once it
    // has suspended at least once: then it is in the registry).
    coroutines::sleep(Duration::from_millis(1));
    // A blocking call no hook covers (a raw system call, as C libraries
    // make internally): the executor itself blocks for 300 ms.
    let ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 300_000_000,
    };
    // SAFETY: nanosleep with a valid timespec and no remainder.
    unsafe {
        libc::syscall(
            libc::SYS_nanosleep,
            &ts,
            std::ptr::null_mut::<libc::timespec>(),
        )
    };
}

fn named<F: FnOnce() + Send + 'static>(name: &str, f: F) -> coroutines::JoinHandle<()> {
    coroutines::Builder::new()
        .name(name.into())
        .spawn(f)
        .expect("spawn")
}

fn main() {
    let wait_for_signal = std::env::args().any(|a| a == "--wait");
    match coroutines::RuntimeBuilder::new()
        .trace(Some(Duration::from_millis(500)))
        .trace_file(Some("observe-trace.json".into()))
        .trace_blocking(true)
        .start()
    {
        Ok(()) => {}
        Err(e) => panic!("{e}"),
    }

    // An echo server and a client whose peer never answers.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = named("echo-server", move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut buf = [0u8; 64];
        while let Ok(n) = s.read(&mut buf) {
            if n == 0 || s.write_all(&buf[..n]).is_err() {
                break;
            }
        }
    });
    let client = named("client", move || {
        let mut s = TcpStream::connect(addr).unwrap();
        // Nobody writes first: parks here until the timeout.
        s.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
        let mut b = [0u8; 5];
        let _ = s.read(&mut b);
        s.write_all(b"hello").unwrap();
        s.read_exact(&mut b).unwrap();
    });

    // std::sync waits.
    let config = Arc::new(Mutex::new(1u32));
    let guard = config.lock().unwrap();
    let c2 = config.clone();
    let reader = named("config-reader", move || {
        wait_for_the_config_lock(&c2);
    });
    let pair = Arc::new((Mutex::new(false), Condvar::new()));
    let p2 = pair.clone();
    let waiter = named("condvar-waiter", move || {
        let (l, c) = &*p2;
        let mut ready = l.lock().unwrap();
        while !*ready {
            ready = c.wait(ready).unwrap();
        }
    });
    let (tx, rx) = mpsc::channel::<u32>();
    let consumer = named("consumer", move || {
        let _ = rx.recv();
    });
    let sleeper = named("sleeper", || coroutines::sleep(Duration::from_secs(2)));
    let joiner = named("joiner", move || reader.join().unwrap());

    // A lock-order deadlock in "C code".
    let (a, b) = (PMutex::new(), PMutex::new());
    let both = Arc::new(std::sync::Barrier::new(2));
    let (a2, b2, both2) = (a.clone(), b.clone(), both.clone());
    let t1 = named("transfer-a-to-b", move || transfer(a2, b2, both2));
    let t2 = named("transfer-b-to-a", move || transfer(b, a, both));

    // CPU work, preempted at its time slice.
    let hog = named("cpu-hog", || {
        let t = std::time::Instant::now();
        let mut x = 0u64;
        while t.elapsed() < Duration::from_millis(1500) {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
        }
        std::hint::black_box(x);
    });

    std::thread::sleep(Duration::from_millis(300));
    println!("===== coroutines::dump() =====\n{}", coroutines::dump());

    // An executor blocked in a call nothing hooks, while work waits.
    let blocker = named("blocker", call_a_c_library_that_blocks);
    let queued: Vec<_> = (0..8)
        .map(|_| coroutines::spawn(coroutines::yield_now))
        .collect();
    blocker.join().unwrap();
    for q in queued {
        q.join().unwrap();
    }
    std::thread::sleep(Duration::from_millis(100));
    println!("===== coroutines::blocking_reports() =====");
    for r in coroutines::blocking_reports() {
        println!("{r}");
    }

    if wait_for_signal {
        println!(
            "pid {}: send the dump signal (e.g. kill -QUIT {}); exiting in 30 s",
            std::process::id(),
            std::process::id()
        );
        std::thread::sleep(Duration::from_secs(30));
    }

    // Let everything finish.
    drop(guard);
    {
        let (l, c) = &*pair;
        *l.lock().unwrap() = true;
        c.notify_all();
    }
    tx.send(1).unwrap();
    for h in [client, waiter, consumer, sleeper, joiner, t1, t2, hog] {
        h.join().unwrap();
    }
    server.join().unwrap();
    coroutines::write_trace().expect("write the trace");
    let s = coroutines::stats();
    println!(
        "===== trace =====\nobserve-trace.json: {} events ({} dropped); open it in https://ui.perfetto.dev",
        s.trace_events, s.trace_dropped
    );
    if let Some(h) = &s.wake_latency {
        println!(
            "wake-to-run latency: p50 <= {:?}, p99 <= {:?} over {} wake-ups",
            h.percentile(0.5).unwrap_or_default(),
            h.percentile(0.99).unwrap_or_default(),
            h.count()
        );
    }
}
