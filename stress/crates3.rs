//! A third battery of crates and program shapes used inside coroutines
//! the way their users use them on threads (see also `stress/crates.rs`
//! and `stress/crates2.rs`): thread pools (the `threadpool` crate, the
//! Rust book's hand-written pool serving HTTP), std's parking, condvar
//! timeouts, rwlocks and rendezvous channels, thread identity and panic
//! payloads, a concurrent cache (moka), hashing with assembly and rayon
//! (blake3), LZ4 frames over sockets, websockets (tungstenite), a foreign
//! async runtime with its own reactor thread (smol) and `pollster`, file
//! locks (fs2), lock-free config swaps (arc-swap), a `mio` event loop,
//! ten thousand pipe readers, eventfd reads (which block an executor),
//! bounded pipelines, allocation churn, a parallel grep, sleeps beside
//! CPU hogs and process pipelines.
//!
//! Each test runs twice in child processes (the runtime is global per
//! process) with 2 executors: once with the default time slice and once
//! with `COROUTINES_SLICE=100us`, each with a watchdog: a hang fails the
//! test. Every child prints the executor-blocking reports it saw.

mod common;

use common::{corpus, join_all};

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

const CHILD: &str = "COROUTINES_CRATES3_CHILD";

/// Runs `body` in a child with 2 executors and the default slice, then in
/// one with a 100 µs slice (`common::battery`: watchdog, blocking reports).
fn in_children(name: &str, body: impl Fn()) {
    common::battery(CHILD, name, body);
}

/// A tiny CPU-bound mix, so scenarios give the preemption timer work.
fn spin(n: u64) -> u64 {
    let mut x = n | 1;
    for i in 0..n {
        x = x.wrapping_mul(6364136223846793005).wrapping_add(i);
    }
    std::hint::black_box(x)
}

/// An echo server on std::net: one coroutine per connection echoes bytes
/// until EOF. Returns the address; runs until the process exits.
fn std_echo_server() -> std::net::SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    coroutines::spawn(move || {
        for s in l.incoming() {
            let mut s = s.unwrap();
            coroutines::spawn(move || {
                let mut buf = [0u8; 8192];
                loop {
                    match s.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => {
                            if s.write_all(&buf[..n]).is_err() {
                                return;
                            }
                        }
                    }
                }
            });
        }
    });
    addr
}

/// The `threadpool` crate (OS worker threads): one pool shared by 32
/// coroutines, each submitting 50 jobs and collecting their results from
/// an mpsc channel (the coroutine parks in `recv`); one job per coroutine
/// panics (the pool counts it and replaces the worker); `join` from a
/// coroutine waits for an idle pool; 8 more coroutines each build and
/// drop a pool of their own.
#[test]
fn threadpool_crate_shared_by_coroutines() {
    in_children("threadpool_crate_shared_by_coroutines", || {
        let pool = threadpool::Builder::new()
            .num_threads(4)
            .thread_name("tp-worker".into())
            .build();
        let mut hs: Vec<_> = (0..32u64)
            .map(|i| {
                let pool = pool.clone();
                coroutines::spawn(move || {
                    let (tx, rx) = std::sync::mpsc::channel();
                    for k in 0..50u64 {
                        let tx = tx.clone();
                        pool.execute(move || {
                            if k == 17 {
                                panic!("job {i}/{k} fails on purpose");
                            }
                            if k % 10 == 0 {
                                std::thread::sleep(Duration::from_millis(1));
                            }
                            let name = std::thread::current().name().map(str::to_owned);
                            tx.send((i * 1000 + k, name)).unwrap();
                        });
                    }
                    drop(tx);
                    let mut sum = 0;
                    let mut n = 0;
                    for (v, name) in rx {
                        assert_eq!(name.as_deref(), Some("tp-worker"));
                        sum += v;
                        n += 1;
                    }
                    assert_eq!(n, 49);
                    sum
                })
            })
            .collect();
        hs.extend((0..8u64).map(|i| {
            coroutines::spawn(move || {
                let own = threadpool::ThreadPool::new(2);
                let total = Arc::new(AtomicU64::new(0));
                for k in 0..20u64 {
                    let total = total.clone();
                    own.execute(move || {
                        total.fetch_add(spin(1000) % 2 + k, Ordering::SeqCst);
                    });
                }
                own.join();
                let t = total.load(Ordering::SeqCst);
                // spin(1000) is odd or even the same way in every job.
                let base = (0..20u64).sum::<u64>();
                assert!(t == base || t == base + 20, "{t}");
                i
            })
        }));
        let res = join_all(hs);
        let want: u64 = (0..32u64)
            .map(|i| {
                (0..50u64)
                    .filter(|&k| k != 17)
                    .map(|k| i * 1000 + k)
                    .sum::<u64>()
            })
            .sum();
        assert_eq!(res[..32].iter().sum::<u64>(), want);
        let p = pool.clone();
        coroutines::spawn(move || p.join()).join().unwrap();
        assert_eq!(pool.panic_count(), 32);
        assert_eq!(pool.active_count(), 0);
        assert_eq!(pool.queued_count(), 0);
        assert_eq!(pool.max_count(), 4);
    });
}

/// The Rust book's multithreaded web server (chapter 20) with coroutines
/// as the pool's workers: each worker takes jobs from an
/// `Arc<Mutex<mpsc::Receiver<Job>>>` holding the lock while it waits in
/// `recv` (the book's `receiver.lock().unwrap().recv()`), the others wait
/// for the lock. 48 concurrent clients send 8 requests each (one
/// connection per request, `/sleep` and 404s among them); the pool's
/// `Drop` sends no more jobs and joins the workers.
#[test]
fn book_worker_pool_http_server() {
    in_children("book_worker_pool_http_server", || {
        type Job = Box<dyn FnOnce() + Send + 'static>;
        struct Worker {
            id: usize,
            handle: Option<coroutines::JoinHandle<usize>>,
        }
        struct ThreadPool {
            workers: Vec<Worker>,
            sender: Option<std::sync::mpsc::Sender<Job>>,
        }
        impl ThreadPool {
            fn new(size: usize) -> ThreadPool {
                let (sender, receiver) = std::sync::mpsc::channel::<Job>();
                let receiver = Arc::new(Mutex::new(receiver));
                let workers = (0..size)
                    .map(|id| {
                        let receiver = Arc::clone(&receiver);
                        let handle = coroutines::spawn(move || {
                            let mut jobs = 0;
                            loop {
                                let message = receiver.lock().unwrap().recv();
                                match message {
                                    Ok(job) => {
                                        job();
                                        jobs += 1;
                                    }
                                    Err(_) => return jobs,
                                }
                            }
                        });
                        Worker {
                            id,
                            handle: Some(handle),
                        }
                    })
                    .collect();
                ThreadPool {
                    workers,
                    sender: Some(sender),
                }
            }
            fn execute<F: FnOnce() + Send + 'static>(&self, f: F) {
                self.sender.as_ref().unwrap().send(Box::new(f)).unwrap();
            }
        }
        impl Drop for ThreadPool {
            fn drop(&mut self) {
                drop(self.sender.take());
                let mut total = 0;
                for w in &mut self.workers {
                    let n = w.handle.take().unwrap().join().unwrap();
                    assert!(w.id < 4);
                    total += n;
                }
                assert_eq!(total, CLIENTS * REQUESTS);
            }
        }
        fn handle_connection(mut stream: TcpStream) {
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request_line = String::new();
            reader.read_line(&mut request_line).unwrap();
            loop {
                let mut l = String::new();
                reader.read_line(&mut l).unwrap();
                if l == "\r\n" || l.is_empty() {
                    break;
                }
            }
            let (status, body) = match request_line.trim_end() {
                "GET / HTTP/1.1" => ("HTTP/1.1 200 OK", "hello".to_string()),
                "GET /sleep HTTP/1.1" => {
                    std::thread::sleep(Duration::from_millis(3));
                    ("HTTP/1.1 200 OK", "slept".to_string())
                }
                other => ("HTTP/1.1 404 NOT FOUND", format!("no {}", other.len())),
            };
            let response = format!("{status}\r\nContent-Length: {}\r\n\r\n{body}", body.len());
            stream.write_all(response.as_bytes()).unwrap();
        }
        const CLIENTS: usize = 48;
        const REQUESTS: usize = 8;
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = coroutines::spawn(move || {
            let pool = ThreadPool::new(4);
            for stream in listener.incoming().take(CLIENTS * REQUESTS) {
                let stream = stream.unwrap();
                pool.execute(|| handle_connection(stream));
            }
            // Dropping the pool joins the workers.
        });
        let hs: Vec<_> = (0..CLIENTS)
            .map(|i| {
                coroutines::spawn(move || {
                    let mut ok = 0;
                    for k in 0..REQUESTS {
                        let path = match (i + k) % 4 {
                            0 => "/sleep",
                            3 => "/missing",
                            _ => "/",
                        };
                        let mut s = TcpStream::connect(addr).unwrap();
                        write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
                        let mut resp = String::new();
                        s.read_to_string(&mut resp).unwrap();
                        let want = match path {
                            "/sleep" => "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nslept",
                            "/" => "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
                            _ => "HTTP/1.1 404 NOT FOUND\r\nContent-Length: 24\r\n\r\nno 24",
                        };
                        if path == "/missing" {
                            assert!(resp.starts_with("HTTP/1.1 404 NOT FOUND\r\n"), "{resp}");
                        } else {
                            assert_eq!(resp, want);
                        }
                        ok += 1;
                    }
                    ok
                })
            })
            .collect();
        assert_eq!(join_all(hs).iter().sum::<usize>(), CLIENTS * REQUESTS);
        server.join().unwrap();
    });
}

/// `thread::park`/`Thread::unpark` along a chain of 64 coroutines (each
/// wakes the next through its std `Thread` handle; spurious wake-ups are
/// tolerated by re-checking a flag), an unpark before the park (the token
/// makes the park return at once), and `park_timeout` with nobody to
/// unpark (returns after at least the timeout).
#[test]
fn park_unpark_chain_and_park_timeout() {
    in_children("park_unpark_chain_and_park_timeout", || {
        const N: usize = 64;
        let flags: Arc<Vec<AtomicBool>> =
            Arc::new((0..N).map(|_| AtomicBool::new(false)).collect());
        let handles: Arc<Mutex<Vec<Option<std::thread::Thread>>>> =
            Arc::new(Mutex::new(vec![None; N]));
        let registered = Arc::new(std::sync::Barrier::new(N + 1));
        let order = Arc::new(Mutex::new(Vec::new()));
        let hs: Vec<_> = (0..N)
            .map(|i| {
                let (flags, handles, registered, order) = (
                    flags.clone(),
                    handles.clone(),
                    registered.clone(),
                    order.clone(),
                );
                coroutines::spawn(move || {
                    handles.lock().unwrap()[i] = Some(std::thread::current());
                    registered.wait();
                    let mut parks = 0u64;
                    while !flags[i].load(Ordering::Acquire) {
                        std::thread::park();
                        parks += 1;
                    }
                    order.lock().unwrap().push(i);
                    if i + 1 < N {
                        flags[i + 1].store(true, Ordering::Release);
                        let next = handles.lock().unwrap()[i + 1].clone().unwrap();
                        next.unpark();
                    }
                    parks
                })
            })
            .collect();
        registered.wait();
        flags[0].store(true, Ordering::Release);
        handles.lock().unwrap()[0].clone().unwrap().unpark();
        join_all(hs);
        assert_eq!(*order.lock().unwrap(), (0..N).collect::<Vec<_>>());

        // Unpark before park: the token is kept.
        let h = coroutines::spawn(|| {
            std::thread::current().unpark();
            let t = Instant::now();
            std::thread::park();
            t.elapsed()
        });
        assert!(h.join().unwrap() < Duration::from_secs(5));

        // park_timeout with nobody unparking, 32 at once.
        let hs: Vec<_> = (0..32u64)
            .map(|i| {
                coroutines::spawn(move || {
                    let d = Duration::from_millis(10 + i % 5);
                    let t = Instant::now();
                    // Spurious wake-ups are allowed: park until the time is up.
                    while t.elapsed() < d {
                        std::thread::park_timeout(d - t.elapsed());
                    }
                    t.elapsed() >= d
                })
            })
            .collect();
        assert!(join_all(hs).into_iter().all(|ok| ok));
    });
}

/// `Condvar::wait_timeout_while`: 24 waiters each wait for the counter to
/// reach its own target, which a producer coroutine raises every 2 ms
/// (none times out); 8 more wait for a condition that never holds and
/// time out after at least 30 ms with the value unchanged.
#[test]
fn condvar_wait_timeout_while() {
    in_children("condvar_wait_timeout_while", || {
        let state = Arc::new((Mutex::new(0u64), Condvar::new()));
        let mut hs: Vec<_> = (0..24u64)
            .map(|i| {
                let state = state.clone();
                coroutines::spawn(move || {
                    let (m, cv) = &*state;
                    let target = 5 + i;
                    let g = m.lock().unwrap();
                    let (g, res) = cv
                        .wait_timeout_while(g, Duration::from_secs(20), |v| *v < target)
                        .unwrap();
                    assert!(!res.timed_out());
                    assert!(*g >= target);
                    true
                })
            })
            .collect();
        let never = Arc::new((Mutex::new(7u64), Condvar::new()));
        hs.extend((0..8u64).map(|_| {
            let never = never.clone();
            coroutines::spawn(move || {
                let (m, cv) = &*never;
                let t = Instant::now();
                let g = m.lock().unwrap();
                let (g, res) = cv
                    .wait_timeout_while(g, Duration::from_millis(30), |v| *v != 8)
                    .unwrap();
                res.timed_out() && *g == 7 && t.elapsed() >= Duration::from_millis(30)
            })
        }));
        let producer = {
            let (state, never) = (state.clone(), never.clone());
            coroutines::spawn(move || {
                for _ in 0..40 {
                    std::thread::sleep(Duration::from_millis(2));
                    *state.0.lock().unwrap() += 1;
                    state.1.notify_all();
                    // Spurious notifications for the never-satisfied waiters.
                    never.1.notify_all();
                }
            })
        };
        producer.join().unwrap();
        assert!(join_all(hs).into_iter().all(|ok| ok));
        assert_eq!(*state.0.lock().unwrap(), 40);
    });
}

/// std `RwLock` with 8 readers that re-take the read lock in a loop
/// (holding it across a little CPU work) and 4 writers that each make
/// 200 increments: the writers are not starved (std's lock prefers
/// waiting writers), readers never see a half-done write.
#[test]
fn rwlock_writers_not_starved() {
    in_children("rwlock_writers_not_starved", || {
        let lock = Arc::new(std::sync::RwLock::new((0u64, 0u64)));
        let done = Arc::new(AtomicBool::new(false));
        let readers: Vec<_> = (0..8)
            .map(|_| {
                let (lock, done) = (lock.clone(), done.clone());
                coroutines::spawn(move || {
                    let mut reads = 0u64;
                    while !done.load(Ordering::Acquire) {
                        let g = lock.read().unwrap();
                        assert_eq!(g.0, g.1, "torn write seen");
                        spin(2_000);
                        drop(g);
                        reads += 1;
                    }
                    reads
                })
            })
            .collect();
        let writers: Vec<_> = (0..4)
            .map(|_| {
                let lock = lock.clone();
                coroutines::spawn(move || {
                    for _ in 0..200 {
                        let mut g = lock.write().unwrap();
                        g.0 += 1;
                        spin(500);
                        g.1 += 1;
                    }
                })
            })
            .collect();
        join_all(writers);
        done.store(true, Ordering::Release);
        let reads: u64 = join_all(readers).into_iter().sum();
        assert!(reads > 0);
        assert_eq!(*lock.read().unwrap(), (800, 800));
    });
}

/// `mpsc::sync_channel(0)` rendezvous in a ring of 16 coroutines: a token
/// goes round 300 times, each hop adds one; each sender blocks until the
/// next coroutine takes it.
#[test]
fn sync_channel_rendezvous_ring() {
    in_children("sync_channel_rendezvous_ring", || {
        const N: usize = 16;
        const ROUNDS: u64 = 300;
        let (txs, rxs): (Vec<_>, Vec<_>) = (0..N)
            .map(|_| std::sync::mpsc::sync_channel::<u64>(0))
            .unzip();
        let mut rxs: Vec<_> = rxs.into_iter().map(Some).collect();
        let mut hs = Vec::new();
        for i in 0..N {
            let rx = rxs[i].take().unwrap();
            let tx = txs[(i + 1) % N].clone();
            hs.push(coroutines::spawn(move || {
                let mut seen = 0u64;
                loop {
                    let v = rx.recv().unwrap();
                    seen += 1;
                    if i == 0 && v == N as u64 * ROUNDS {
                        return (seen, v);
                    }
                    if i % 4 == 1 {
                        spin(3_000);
                    }
                    tx.send(v + 1).unwrap();
                    if i != 0 && seen == ROUNDS {
                        return (seen, v);
                    }
                }
            }));
        }
        txs[0].send(0).unwrap();
        drop(txs);
        let res = join_all(hs);
        assert_eq!(res[0], (ROUNDS + 1, N as u64 * ROUNDS));
        for (i, r) in res.iter().enumerate().skip(1) {
            assert_eq!(*r, (ROUNDS, (ROUNDS - 1) * N as u64 + i as u64));
        }
    });
}

/// Thread identity and panics: 1,000 live coroutines (held at a barrier)
/// have 1,000 distinct `thread::current().id()`s; `Builder` names are
/// seen through `coroutines::current()`; `available_parallelism` answers
/// inside a coroutine; panics come back from `join` with their payloads
/// (`&str`, `String`, a custom type via `panic_any`), and a panic caught
/// with `catch_unwind` inside a coroutine lets it go on.
#[test]
fn identity_names_panic_payloads() {
    in_children("identity_names_panic_payloads", || {
        const N: usize = 1000;
        let barrier = Arc::new(std::sync::Barrier::new(N));
        let hs: Vec<_> = (0..N)
            .map(|i| {
                let barrier = barrier.clone();
                coroutines::Builder::new()
                    .name(format!("ident-{i}"))
                    .spawn(move || {
                        let id = std::thread::current().id();
                        barrier.wait();
                        assert_eq!(std::thread::current().id(), id);
                        let name = coroutines::current().name().map(str::to_owned);
                        assert_eq!(name, Some(format!("ident-{i}")));
                        assert!(std::thread::available_parallelism().unwrap().get() >= 1);
                        id
                    })
                    .unwrap()
            })
            .collect();
        let ids = join_all(hs);
        let set: std::collections::HashSet<_> = ids.iter().collect();
        assert_eq!(set.len(), N);
        assert!(!set.contains(&std::thread::current().id()));

        #[derive(Debug, PartialEq)]
        struct Custom(u32);
        // Quiet the default hook: the panics below are expected.
        let default_hook = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let expected = info
                .payload()
                .downcast_ref::<&str>()
                .is_some_and(|s| *s == "plain str" || *s == "inner")
                || info
                    .payload()
                    .downcast_ref::<String>()
                    .is_some_and(|s| s == "formatted 42")
                || info.payload().is::<Custom>();
            if !expected {
                default_hook(info);
            }
        }));
        let a = coroutines::spawn(|| -> u32 { panic!("plain str") });
        // A runtime value: a literal would be folded into a `&str` payload.
        let b = coroutines::spawn(|| -> u32 {
            let n = std::hint::black_box(42);
            panic!("formatted {n}")
        });
        let c = coroutines::spawn(|| -> u32 { std::panic::panic_any(Custom(7)) });
        let d = coroutines::spawn(|| -> u32 {
            let r = std::panic::catch_unwind(|| {
                std::thread::sleep(Duration::from_millis(1));
                panic!("inner");
            });
            assert!(r.is_err());
            std::thread::sleep(Duration::from_millis(1));
            5
        });
        let e = a.join().unwrap_err();
        assert_eq!(e.downcast_ref::<&str>(), Some(&"plain str"));
        let e = b.join().unwrap_err();
        assert_eq!(
            e.downcast_ref::<String>().map(String::as_str),
            Some("formatted 42")
        );
        let e = c.join().unwrap_err();
        assert_eq!(e.downcast_ref::<Custom>(), Some(&Custom(7)));
        assert_eq!(d.join().unwrap(), 5);
        let _ = std::panic::take_hook();
    });
}

/// moka's synchronous cache (no background threads: maintenance runs in
/// the callers): 32 coroutines call `get_with` on the same 500 keys in
/// different orders, with a slow initialiser (sleeps, CPU) — each key is
/// initialised exactly once, concurrent callers wait for it; then a
/// size-bounded cache takes 2,000 distinct inserts from 16 coroutines and
/// after `run_pending_tasks` its entries plus the evictions its listener
/// saw add up to every insert; a time-to-live entry expires.
#[test]
fn moka_sync_cache() {
    in_children("moka_sync_cache", || {
        use moka::sync::Cache;
        const KEYS: u64 = 500;
        let inits: Arc<Vec<AtomicUsize>> =
            Arc::new((0..KEYS).map(|_| AtomicUsize::new(0)).collect());
        let cache: Cache<u64, Arc<String>> = Cache::new(10_000);
        let hs: Vec<_> = (0..32u64)
            .map(|i| {
                let (cache, inits) = (cache.clone(), inits.clone());
                coroutines::spawn(move || {
                    let mut sum = 0usize;
                    for j in 0..KEYS {
                        let k = (j * 7 + i * 13) % KEYS;
                        let v = cache.get_with(k, || {
                            inits[k as usize].fetch_add(1, Ordering::SeqCst);
                            if k % 50 == 0 {
                                std::thread::sleep(Duration::from_millis(2));
                            } else {
                                spin(2_000);
                            }
                            Arc::new(format!("value-{k}"))
                        });
                        assert_eq!(*v, format!("value-{k}"));
                        sum += v.len();
                    }
                    sum
                })
            })
            .collect();
        let sums = join_all(hs);
        assert!(sums.iter().all(|&s| s == sums[0]));
        for (k, n) in inits.iter().enumerate() {
            assert_eq!(
                n.load(Ordering::SeqCst),
                1,
                "key {k} initialised more than once"
            );
        }
        cache.run_pending_tasks();
        assert_eq!(cache.entry_count(), KEYS);

        let evicted = Arc::new(AtomicUsize::new(0));
        let ev = evicted.clone();
        let small: Cache<u64, u64> = Cache::builder()
            .max_capacity(100)
            .eviction_listener(move |_k, _v, cause| {
                assert!(cause.was_evicted(), "{cause:?}");
                ev.fetch_add(1, Ordering::SeqCst);
            })
            .build();
        let hs: Vec<_> = (0..16u64)
            .map(|i| {
                let small = small.clone();
                coroutines::spawn(move || {
                    for k in 0..125u64 {
                        small.insert(i * 1000 + k, k);
                        // Hot keys, so the admission policy has something to keep.
                        let _ = small.get(&(i * 1000));
                    }
                })
            })
            .collect();
        join_all(hs);
        small.run_pending_tasks();
        let left = small.entry_count();
        assert!(left <= 100, "{left} entries in a cache of 100");
        assert_eq!(left as usize + evicted.load(Ordering::SeqCst), 2000);

        let ttl: Cache<u32, u32> = Cache::builder()
            .time_to_live(Duration::from_millis(30))
            .build();
        let t2 = ttl.clone();
        coroutines::spawn(move || {
            t2.insert(1, 10);
            assert_eq!(t2.get(&1), Some(10));
            std::thread::sleep(Duration::from_millis(60));
            assert_eq!(t2.get(&1), None);
        })
        .join()
        .unwrap();
    });
}

/// blake3 (SIMD assembly in the executable; C code to the runtime, never
/// preempted): 16 coroutines hash 4 MiB each through `Hasher::update` in
/// uneven pieces, with `keyed_hash` and `update_rayon` (rayon's pool
/// threads do the work while the coroutine waits on rayon's latch); every
/// digest equals the one computed on the main thread.
#[test]
fn blake3_hashing_with_rayon() {
    in_children("blake3_hashing_with_rayon", || {
        let data: Arc<Vec<Vec<u8>>> =
            Arc::new((0..4u64).map(|s| corpus(s + 100, 4 << 20)).collect());
        let want: Vec<_> = data.iter().map(|d| blake3::hash(d)).collect();
        let key = [7u8; 32];
        let want_keyed: Vec<_> = data.iter().map(|d| blake3::keyed_hash(&key, d)).collect();
        let want = Arc::new((want, want_keyed));
        let hs: Vec<_> = (0..16usize)
            .map(|i| {
                let (data, want) = (data.clone(), want.clone());
                coroutines::spawn(move || {
                    let d = &data[i % 4];
                    let mut h = blake3::Hasher::new();
                    let mut off = 0;
                    let mut step = 1 + i * 37;
                    while off < d.len() {
                        let end = (off + step).min(d.len());
                        h.update(&d[off..end]);
                        off = end;
                        step = step * 3 % 70_001 + 1;
                    }
                    assert_eq!(h.finalize(), want.0[i % 4]);
                    assert_eq!(blake3::keyed_hash(&key, d), want.1[i % 4]);
                    let mut r = blake3::Hasher::new();
                    r.update_rayon(d);
                    assert_eq!(r.finalize(), want.0[i % 4]);
                    // The extendable output: the same prefix as the hash.
                    let mut out = [0u8; 64];
                    h.finalize_xof().fill(&mut out);
                    assert_eq!(&out[..32], want.0[i % 4].as_bytes());
                })
            })
            .collect();
        join_all(hs);
    });
}

/// lz4_flex frames (pure Rust) streamed over Unix sockets: 16 pairs of
/// coroutines, the writer compresses 2 MiB through a `FrameEncoder` in
/// uneven writes, the reader decompresses through a `FrameDecoder` and
/// checks every byte; plus the block API under preemption.
#[test]
fn lz4_flex_frames_over_sockets() {
    in_children("lz4_flex_frames_over_sockets", || {
        let hs: Vec<_> = (0..16u64)
            .map(|i| {
                coroutines::spawn(move || {
                    let data = Arc::new(corpus(i + 1, 2 << 20));
                    let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
                    let d2 = data.clone();
                    let w = coroutines::spawn(move || {
                        let mut enc = lz4_flex::frame::FrameEncoder::new(a);
                        let mut off = 0;
                        let mut step = 100 + i as usize * 911;
                        while off < d2.len() {
                            let end = (off + step).min(d2.len());
                            enc.write_all(&d2[off..end]).unwrap();
                            off = end;
                            step = step * 7 % 65_521 + 1;
                        }
                        let a = enc.finish().unwrap();
                        a.shutdown(std::net::Shutdown::Write).unwrap();
                    });
                    let mut dec = lz4_flex::frame::FrameDecoder::new(b);
                    let mut out = Vec::new();
                    dec.read_to_end(&mut out).unwrap();
                    w.join().unwrap();
                    assert_eq!(out.len(), data.len());
                    assert!(out == *data);
                    let block = lz4_flex::compress_prepend_size(&data[..256 << 10]);
                    assert!(block.len() < 256 << 10);
                    let back = lz4_flex::decompress_size_prepended(&block).unwrap();
                    assert!(back[..] == data[..256 << 10]);
                    out.len()
                })
            })
            .collect();
        assert_eq!(join_all(hs).iter().sum::<usize>(), 16 * (2 << 20));
    });
}

/// A tungstenite websocket server (one coroutine per connection, echoing
/// every data message) and 32 coroutine clients each exchanging 40 text
/// and binary messages of up to 64 KiB, a ping, then the close handshake.
#[test]
fn tungstenite_echo() {
    in_children("tungstenite_echo", || {
        use tungstenite::Message;
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let served = Arc::new(AtomicUsize::new(0));
        let s2 = served.clone();
        coroutines::spawn(move || {
            for s in l.incoming() {
                let s = s.unwrap();
                let served = s2.clone();
                coroutines::spawn(move || {
                    let mut ws = tungstenite::accept(s).unwrap();
                    loop {
                        match ws.read() {
                            Ok(m @ (Message::Text(_) | Message::Binary(_))) => {
                                served.fetch_add(1, Ordering::SeqCst);
                                ws.send(m).unwrap();
                            }
                            Ok(_) => {}
                            Err(tungstenite::Error::ConnectionClosed) => return,
                            Err(e) => panic!("server: {e}"),
                        }
                    }
                });
            }
        });
        let hs: Vec<_> = (0..32u64)
            .map(|i| {
                coroutines::spawn(move || {
                    let s = TcpStream::connect(addr).unwrap();
                    let (mut ws, resp) =
                        tungstenite::client(format!("ws://{addr}/chat/{i}"), s).unwrap();
                    assert_eq!(resp.status(), 101);
                    let mut bytes = 0;
                    for k in 0..40u64 {
                        let len = ((i * 977 + k * 4099) % (64 << 10)) as usize;
                        let m = if k % 2 == 0 {
                            Message::Text(format!("{i}:{k}:{}", "x".repeat(len)))
                        } else {
                            Message::Binary(corpus(i * 100 + k, len))
                        };
                        ws.send(m.clone()).unwrap();
                        if k == 20 {
                            ws.send(Message::Ping(b"p".to_vec())).unwrap();
                        }
                        let back = loop {
                            match ws.read().unwrap() {
                                Message::Pong(p) => assert_eq!(p, b"p"),
                                other => break other,
                            }
                        };
                        assert_eq!(back, m);
                        bytes += back.len();
                    }
                    ws.close(None).unwrap();
                    loop {
                        match ws.read() {
                            Ok(_) => {}
                            Err(tungstenite::Error::ConnectionClosed) => break,
                            Err(e) => panic!("client close: {e}"),
                        }
                    }
                    bytes
                })
            })
            .collect();
        let bytes: usize = join_all(hs).into_iter().sum();
        assert!(bytes > 0);
        assert_eq!(served.load(Ordering::SeqCst), 32 * 40);
    });
}

/// smol, a foreign async runtime whose reactor runs on its own OS thread
/// ("async-io") or inside whichever `block_on` holds it, with a blocking
/// pool of its own: 24 coroutines each `smol::block_on` a TCP exchange
/// with a std::net echo server, a `Timer`, `smol::unblock` and a child
/// process; then a `smol::Executor` driven by 4 coroutines (the docs'
/// multi-threaded executor shape) runs 200 tasks until a shutdown signal.
#[test]
fn smol_block_on_and_executor() {
    in_children("smol_block_on_and_executor", || {
        use smol::io::{AsyncReadExt, AsyncWriteExt};
        let addr = std_echo_server();
        let hs: Vec<_> = (0..24u64)
            .map(|i| {
                coroutines::spawn(move || {
                    smol::block_on(async move {
                        let mut s = smol::net::TcpStream::connect(addr).await.unwrap();
                        let mut total = 0u64;
                        for k in 0..20u64 {
                            let msg = corpus(i * 50 + k, 1 + (k as usize * 997) % 20_000);
                            s.write_all(&msg).await.unwrap();
                            let mut back = vec![0u8; msg.len()];
                            s.read_exact(&mut back).await.unwrap();
                            assert!(back == msg);
                            total += back.len() as u64;
                            if k % 5 == 0 {
                                let t = Instant::now();
                                smol::Timer::after(Duration::from_millis(2)).await;
                                assert!(t.elapsed() >= Duration::from_millis(2));
                            }
                        }
                        let v = smol::unblock(move || spin(10_000) % 3 + i).await;
                        assert!(v >= i && v < i + 3);
                        if i % 6 == 0 {
                            let out = smol::process::Command::new("echo")
                                .arg(format!("smol-{i}"))
                                .output()
                                .await
                                .unwrap();
                            assert!(out.status.success());
                            assert_eq!(out.stdout, format!("smol-{i}\n").into_bytes());
                        }
                        total
                    })
                })
            })
            .collect();
        let want: u64 = (0..24u64)
            .flat_map(|_| (0..20u64).map(|k| 1 + (k * 997) % 20_000))
            .sum();
        assert_eq!(join_all(hs).into_iter().sum::<u64>(), want);

        let ex = Arc::new(smol::Executor::new());
        let (stop_tx, stop_rx) = smol::channel::unbounded::<()>();
        let runners: Vec<_> = (0..4)
            .map(|_| {
                let (ex, stop_rx) = (ex.clone(), stop_rx.clone());
                coroutines::spawn(move || {
                    smol::block_on(ex.run(async move {
                        let _ = stop_rx.recv().await;
                    }))
                })
            })
            .collect();
        let (tx, rx) = smol::channel::bounded::<u64>(8);
        let tasks: Vec<_> = (0..200u64)
            .map(|i| {
                let tx = tx.clone();
                ex.spawn(async move {
                    smol::Timer::after(Duration::from_micros(100 * (i % 10))).await;
                    tx.send(spin(500) % 2 + i * 2).await.unwrap();
                })
            })
            .collect();
        drop(tx);
        let sum = coroutines::spawn(move || {
            smol::block_on(async move {
                let mut sum = 0;
                while let Ok(v) = rx.recv().await {
                    sum += v / 2;
                }
                sum
            })
        })
        .join()
        .unwrap();
        assert_eq!(sum, (0..200u64).sum::<u64>());
        // Every task completes. (Not `is_finished()` at once: a task's
        // future drops its sender, which can end the receiving loop above,
        // just before async-task marks the task completed on its runner,
        // a window a preemption there widens: seen once in a loaded full
        // suite.)
        for t in tasks {
            smol::block_on(t);
        }
        drop(stop_tx);
        join_all(runners);
    });
}

/// `pollster::block_on` (parks the caller with a Mutex and Condvar until
/// the waker runs) on hand-written one-shot futures completed by other
/// coroutines after a sleep, and by an OS thread: 300 waiters.
#[test]
fn pollster_wakers_across_coroutines() {
    in_children("pollster_wakers_across_coroutines", || {
        use std::future::Future;
        use std::pin::Pin;
        use std::task::{Context, Poll, Waker};
        #[derive(Default)]
        struct Slot {
            value: Option<u64>,
            waker: Option<Waker>,
            polls: u64,
        }
        struct OneShot(Arc<Mutex<Slot>>);
        impl Future for OneShot {
            type Output = (u64, u64);
            fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<(u64, u64)> {
                let mut s = self.0.lock().unwrap();
                s.polls += 1;
                match s.value {
                    Some(v) => Poll::Ready((v, s.polls)),
                    None => {
                        s.waker = Some(cx.waker().clone());
                        Poll::Pending
                    }
                }
            }
        }
        fn complete(slot: &Mutex<Slot>, v: u64) {
            let w = {
                let mut s = slot.lock().unwrap();
                s.value = Some(v);
                s.waker.take()
            };
            if let Some(w) = w {
                w.wake();
            }
        }
        const N: u64 = 300;
        let slots: Vec<_> = (0..N)
            .map(|_| Arc::new(Mutex::new(Slot::default())))
            .collect();
        let waiters: Vec<_> = slots
            .iter()
            .map(|s| {
                let s = s.clone();
                coroutines::spawn(move || pollster::block_on(OneShot(s)))
            })
            .collect();
        let thread_slots: Vec<_> = slots.iter().step_by(3).cloned().collect();
        let os = std::thread::spawn(move || {
            for (j, s) in thread_slots.iter().enumerate() {
                std::thread::sleep(Duration::from_micros(200));
                complete(s, j as u64 * 3);
            }
        });
        let completers: Vec<_> = slots
            .iter()
            .enumerate()
            .filter(|(i, _)| i % 3 != 0)
            .map(|(i, s)| {
                let s = s.clone();
                coroutines::spawn(move || {
                    std::thread::sleep(Duration::from_millis(1 + i as u64 % 7));
                    complete(&s, i as u64);
                })
            })
            .collect();
        join_all(completers);
        os.join().unwrap();
        let res = join_all(waiters);
        for (i, (v, polls)) in res.into_iter().enumerate() {
            assert_eq!(v, i as u64);
            assert!(polls >= 1);
        }
    });
}

/// fs2's `flock` file locks: 16 coroutines each make 40 increments of a
/// counter kept in a file, each under an exclusive lock taken on a fresh
/// open of the file (a lock per open file description, so they exclude
/// each other within the process); `try_lock_exclusive` while a lock is
/// held fails with `WouldBlock`; shared locks coexist.
#[test]
fn fs2_flock_counter() {
    in_children("fs2_flock_counter", || {
        use fs2::FileExt;
        let dir = tempfile::tempdir().unwrap();
        let path = Arc::new(dir.path().join("counter"));
        std::fs::write(&*path, "0").unwrap();
        let contended = Arc::new(AtomicUsize::new(0));
        let hs: Vec<_> = (0..16u64)
            .map(|i| {
                let (path, contended) = (path.clone(), contended.clone());
                coroutines::spawn(move || {
                    for k in 0..40u64 {
                        let mut f = std::fs::OpenOptions::new()
                            .read(true)
                            .write(true)
                            .open(&*path)
                            .unwrap();
                        if FileExt::try_lock_exclusive(&f).is_err() {
                            contended.fetch_add(1, Ordering::SeqCst);
                            FileExt::lock_exclusive(&f).unwrap();
                        }
                        let mut s = String::new();
                        f.read_to_string(&mut s).unwrap();
                        let n: u64 = s.trim().parse().unwrap();
                        if (i + k) % 8 == 0 {
                            std::thread::sleep(Duration::from_micros(300));
                        }
                        f.set_len(0).unwrap();
                        use std::io::Seek;
                        f.seek(std::io::SeekFrom::Start(0)).unwrap();
                        write!(f, "{}", n + 1).unwrap();
                        FileExt::unlock(&f).unwrap();
                    }
                })
            })
            .collect();
        join_all(hs);
        assert_eq!(std::fs::read_to_string(&*path).unwrap(), "640");
        eprintln!("contended: {}", contended.load(Ordering::SeqCst));

        // A held lock makes another description's try fail; shared ones coexist.
        let p2 = path.clone();
        coroutines::spawn(move || {
            let a = std::fs::File::open(&*p2).unwrap();
            let b = std::fs::File::open(&*p2).unwrap();
            FileExt::lock_exclusive(&a).unwrap();
            let e = FileExt::try_lock_exclusive(&b).unwrap_err();
            assert_eq!(e.kind(), std::io::ErrorKind::WouldBlock);
            let waiter = {
                let p3 = p2.clone();
                coroutines::spawn(move || {
                    let c = std::fs::File::open(&*p3).unwrap();
                    let t = Instant::now();
                    FileExt::lock_shared(&c).unwrap();
                    t.elapsed()
                })
            };
            std::thread::sleep(Duration::from_millis(30));
            FileExt::unlock(&a).unwrap();
            assert!(waiter.join().unwrap() >= Duration::from_millis(20));
            FileExt::lock_shared(&a).unwrap();
            FileExt::lock_shared(&b).unwrap();
            assert!(fs2::available_space(p2.parent().unwrap()).unwrap() > 0);
        })
        .join()
        .unwrap();
    });
}

/// arc-swap (per-thread debt lists kept in thread-locals): a writer
/// coroutine publishes 2,000 versions of a config while 2,000 short-lived
/// reader coroutines (in waves) load it 500 times each: every snapshot is
/// consistent and versions never go backwards within a reader; `rcu`
/// updates from 8 coroutines lose no increment.
#[test]
fn arc_swap_config_reload() {
    in_children("arc_swap_config_reload", || {
        use arc_swap::ArcSwap;
        #[derive(Debug)]
        struct Config {
            version: u64,
            a: u64,
            b: u64,
            name: String,
        }
        let cfg = Arc::new(ArcSwap::from_pointee(Config {
            version: 0,
            a: 0,
            b: 0,
            name: "v0".into(),
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let writer = {
            let cfg = cfg.clone();
            coroutines::spawn(move || {
                for v in 1..=2000u64 {
                    cfg.store(Arc::new(Config {
                        version: v,
                        a: v * 3,
                        b: v * 5,
                        name: format!("v{v}"),
                    }));
                    if v % 100 == 0 {
                        std::thread::sleep(Duration::from_micros(500));
                    }
                }
            })
        };
        let mut loads = 0u64;
        for wave in 0..4u64 {
            let hs: Vec<_> = (0..500u64)
                .map(|i| {
                    let cfg = cfg.clone();
                    coroutines::spawn(move || {
                        let mut last = 0;
                        for k in 0..500u64 {
                            let c = cfg.load();
                            assert_eq!(c.a, c.version * 3);
                            assert_eq!(c.b, c.version * 5);
                            assert_eq!(c.name, format!("v{}", c.version));
                            assert!(c.version >= last, "went back {} -> {}", last, c.version);
                            last = c.version;
                            if (k + i + wave) % 100 == 0 {
                                let full = cfg.load_full();
                                coroutines::yield_now();
                                assert!(full.version >= last);
                            }
                        }
                        500u64
                    })
                })
                .collect();
            loads += join_all(hs).into_iter().sum::<u64>();
        }
        writer.join().unwrap();
        stop.store(true, Ordering::SeqCst);
        assert_eq!(loads, 2000 * 500);
        assert_eq!(cfg.load().version, 2000);

        let counter = Arc::new(ArcSwap::from_pointee(0u64));
        let hs: Vec<_> = (0..8)
            .map(|_| {
                let counter = counter.clone();
                coroutines::spawn(move || {
                    for _ in 0..500 {
                        counter.rcu(|v| **v + 1);
                    }
                })
            })
            .collect();
        join_all(hs);
        assert_eq!(**counter.load(), 4000);
    });
}

/// A `mio` event loop (the reactor under tokio, used directly) inside a
/// coroutine: a line-echo server on a non-blocking listener serving 32
/// coroutine clients (std::net, 100 lines each), stopped through a
/// `mio::Waker` from another coroutine.
#[test]
fn mio_event_loop_in_coroutine() {
    in_children("mio_event_loop_in_coroutine", || {
        use mio::net::TcpListener as MioListener;
        use mio::{Events, Interest, Poll, Token, Waker};
        const LISTENER: Token = Token(0);
        const WAKER: Token = Token(1);
        let mut listener = MioListener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.local_addr().unwrap();
        let mut poll = Poll::new().unwrap();
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)
            .unwrap();
        let waker = Arc::new(Waker::new(poll.registry(), WAKER).unwrap());
        let server = coroutines::spawn(move || {
            struct Conn {
                s: mio::net::TcpStream,
                inbuf: Vec<u8>,
                out: Vec<u8>,
            }
            let mut conns: std::collections::HashMap<Token, Conn> = Default::default();
            let mut next = 2usize;
            let mut events = Events::with_capacity(256);
            let mut lines = 0u64;
            loop {
                poll.poll(&mut events, None).unwrap();
                for ev in events.iter() {
                    match ev.token() {
                        WAKER => return (lines, conns.len()),
                        LISTENER => loop {
                            match listener.accept() {
                                Ok((mut s, _)) => {
                                    let t = Token(next);
                                    next += 1;
                                    poll.registry()
                                        .register(
                                            &mut s,
                                            t,
                                            Interest::READABLE | Interest::WRITABLE,
                                        )
                                        .unwrap();
                                    conns.insert(
                                        t,
                                        Conn {
                                            s,
                                            inbuf: Vec::new(),
                                            out: Vec::new(),
                                        },
                                    );
                                }
                                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                                Err(e) => panic!("accept: {e}"),
                            }
                        },
                        t => {
                            let mut closed = false;
                            if let Some(c) = conns.get_mut(&t) {
                                let mut buf = [0u8; 4096];
                                loop {
                                    match c.s.read(&mut buf) {
                                        Ok(0) => {
                                            closed = true;
                                            break;
                                        }
                                        Ok(n) => c.inbuf.extend_from_slice(&buf[..n]),
                                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                                            break
                                        }
                                        Err(e) => panic!("read: {e}"),
                                    }
                                }
                                while let Some(p) = c.inbuf.iter().position(|&b| b == b'\n') {
                                    let line: Vec<u8> = c.inbuf.drain(..=p).collect();
                                    c.out.extend(line.iter().map(|b| b.to_ascii_uppercase()));
                                    lines += 1;
                                }
                                while !c.out.is_empty() {
                                    match c.s.write(&c.out) {
                                        Ok(n) => {
                                            c.out.drain(..n);
                                        }
                                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                                            break
                                        }
                                        Err(e) => panic!("write: {e}"),
                                    }
                                }
                            }
                            if closed {
                                let mut c = conns.remove(&t).unwrap();
                                poll.registry().deregister(&mut c.s).unwrap();
                            }
                        }
                    }
                }
            }
        });
        let hs: Vec<_> = (0..32u64)
            .map(|i| {
                coroutines::spawn(move || {
                    let s = TcpStream::connect(addr).unwrap();
                    let mut r = BufReader::new(s.try_clone().unwrap());
                    let mut w = s;
                    for k in 0..100u64 {
                        writeln!(
                            w,
                            "client {i} line {k} {}",
                            "z".repeat((k * 13 % 300) as usize)
                        )
                        .unwrap();
                        let mut back = String::new();
                        r.read_line(&mut back).unwrap();
                        assert_eq!(
                            back,
                            format!(
                                "CLIENT {i} LINE {k} {}\n",
                                "Z".repeat((k * 13 % 300) as usize)
                            )
                        );
                    }
                    100u64
                })
            })
            .collect();
        assert_eq!(join_all(hs).into_iter().sum::<u64>(), 3200);
        let w = waker.clone();
        coroutines::spawn(move || w.wake().unwrap()).join().unwrap();
        let (lines, _open) = server.join().unwrap();
        assert_eq!(lines, 3200);
    });
}

/// 10,000 short coroutines, each blocked in one `read` of a pipe of its
/// own (2,500 alive at once: 5,000 fds), woken by writer coroutines that
/// fill the pipes in reverse order.
#[test]
fn pipe_reads_10000_coroutines() {
    in_children("pipe_reads_10000_coroutines", || {
        const WAVE: u64 = 2500;
        let mut total = 0u64;
        let t0 = Instant::now();
        for wave in 0..4u64 {
            let mut writers = Vec::new();
            let readers: Vec<_> = (0..WAVE)
                .map(|i| {
                    let (mut r, w) = std::io::pipe().unwrap();
                    writers.push(w);
                    coroutines::spawn(move || {
                        let mut b = [0u8; 8];
                        r.read_exact(&mut b).unwrap();
                        let v = u64::from_le_bytes(b);
                        assert_eq!(v, wave * WAVE + i);
                        // EOF after the writer closed its end.
                        assert_eq!(r.read(&mut b).unwrap(), 0);
                        v
                    })
                })
                .collect();
            // Let the readers block first.
            std::thread::sleep(Duration::from_millis(20));
            let mut writers: Vec<_> = writers.into_iter().enumerate().rev().collect();
            let mut chunks: Vec<Vec<_>> = Vec::new();
            while !writers.is_empty() {
                let rest = writers.split_off(writers.len().min(625));
                chunks.push(std::mem::replace(&mut writers, rest));
            }
            let ws: Vec<_> = chunks
                .into_iter()
                .map(|chunk| {
                    coroutines::spawn(move || {
                        for (i, mut w) in chunk {
                            w.write_all(&(wave * WAVE + i as u64).to_le_bytes())
                                .unwrap();
                        }
                    })
                })
                .collect();
            join_all(ws);
            total += join_all(readers).into_iter().sum::<u64>();
        }
        assert_eq!(total, (0..4 * WAVE).sum::<u64>());
        eprintln!("10,000 pipe readers in {:?}", t0.elapsed());
    });
}

/// `read` of an eventfd is not hooked (it blocks the executor; the
/// detector starts extra executors for the waiting work): 12 coroutines
/// block in eventfd reads at once, others write to them after a sleep,
/// and a CPU-bound coroutine still finishes.
#[test]
fn eventfd_reads_block_executors() {
    in_children("eventfd_reads_block_executors", || {
        const N: usize = 12;
        // SAFETY: eventfd creates a new fd; no memory is involved.
        let fds: Vec<i32> = (0..N)
            .map(|_| unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) })
            .collect();
        assert!(fds.iter().all(|&fd| fd >= 0));
        let readers: Vec<_> = fds
            .iter()
            .map(|&fd| {
                coroutines::spawn(move || {
                    let mut v = 0u64;
                    // SAFETY: reads 8 bytes into a live u64 from an fd this
                    // test owns until the joins below.
                    let n = unsafe { libc::read(fd, (&mut v as *mut u64).cast(), 8) };
                    assert_eq!(n, 8);
                    v
                })
            })
            .collect();
        let hog = coroutines::spawn(|| spin(20_000_000));
        let writers: Vec<_> = fds
            .iter()
            .enumerate()
            .map(|(i, &fd)| {
                coroutines::spawn(move || {
                    std::thread::sleep(Duration::from_millis(5 + i as u64));
                    let v = i as u64 + 1;
                    // SAFETY: writes 8 bytes from a live u64 to an fd this
                    // test owns until the joins below.
                    let n = unsafe { libc::write(fd, (&v as *const u64).cast(), 8) };
                    assert_eq!(n, 8);
                })
            })
            .collect();
        join_all(writers);
        let got = join_all(readers);
        assert_eq!(got, (1..=N as u64).collect::<Vec<_>>());
        hog.join().unwrap();
        for fd in fds {
            // SAFETY: closes an fd this test created and no longer uses.
            unsafe { libc::close(fd) };
        }
        let s = coroutines::stats();
        eprintln!(
            "blocked episodes {} extra executors {}",
            s.blocked_seen, s.extra_started
        );
    });
}

/// A four-stage pipeline over bounded channels (std `sync_channel(2)`,
/// crossbeam `bounded(2)`, std again): 20,000 items, CPU work in the
/// middle stages, a filter; the items in flight never exceed what the
/// channels and the stages' hands hold (backpressure), and the sum is
/// exact.
#[test]
fn bounded_pipeline_backpressure() {
    in_children("bounded_pipeline_backpressure", || {
        const ITEMS: u64 = 20_000;
        let in_flight = Arc::new(AtomicUsize::new(0));
        let max_seen = Arc::new(AtomicUsize::new(0));
        let (tx1, rx1) = std::sync::mpsc::sync_channel::<u64>(2);
        let (tx2, rx2) = crossbeam_channel::bounded::<(u64, u64)>(2);
        let (tx3, rx3) = std::sync::mpsc::sync_channel::<(u64, u64)>(2);
        let producer = {
            let (in_flight, max_seen) = (in_flight.clone(), max_seen.clone());
            coroutines::spawn(move || {
                for i in 0..ITEMS {
                    let n = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                    max_seen.fetch_max(n, Ordering::SeqCst);
                    tx1.send(i).unwrap();
                }
            })
        };
        let stage1 = coroutines::spawn(move || {
            for i in rx1 {
                let h = spin(200 + i % 300);
                tx2.send((i, h)).unwrap();
            }
        });
        let stage2 = {
            let in_flight = in_flight.clone();
            coroutines::spawn(move || {
                for (i, h) in rx2 {
                    if i % 10 == 9 {
                        // Filtered out: leaves the pipeline here.
                        in_flight.fetch_sub(1, Ordering::SeqCst);
                        continue;
                    }
                    tx3.send((i, h ^ spin(100))).unwrap();
                }
            })
        };
        let consumer = {
            let in_flight = in_flight.clone();
            coroutines::spawn(move || {
                let mut sum = 0u64;
                let mut n = 0u64;
                let mut last = None;
                for (i, _h) in rx3 {
                    in_flight.fetch_sub(1, Ordering::SeqCst);
                    assert!(last.is_none_or(|l| l < i), "out of order");
                    last = Some(i);
                    sum += i;
                    n += 1;
                    if n % 1000 == 0 {
                        std::thread::sleep(Duration::from_micros(200));
                    }
                }
                (n, sum)
            })
        };
        producer.join().unwrap();
        stage1.join().unwrap();
        stage2.join().unwrap();
        let (n, sum) = consumer.join().unwrap();
        assert_eq!(n, ITEMS - ITEMS / 10);
        assert_eq!(sum, (0..ITEMS).filter(|i| i % 10 != 9).sum::<u64>());
        assert_eq!(in_flight.load(Ordering::SeqCst), 0);
        // Three channels of 2, one item in the hands of each of the four
        // stages (the consumer's until it counts it).
        let max = max_seen.load(Ordering::SeqCst);
        assert!(max <= 3 * 2 + 4, "{max} items in flight");
    });
}

/// Allocation churn from 1,000 coroutines (Vecs, Strings, boxed trees,
/// `BTreeMap`s of varied sizes, freed in other coroutines than the ones
/// that allocated them), with checksums; the process's resident memory
/// afterwards stays within a generous bound.
#[test]
fn memory_churn_1000_coroutines() {
    in_children("memory_churn_1000_coroutines", || {
        fn rss_kib() -> u64 {
            let s = std::fs::read_to_string("/proc/self/statm").unwrap();
            let pages: u64 = s.split_whitespace().nth(1).unwrap().parse().unwrap();
            pages * 4
        }
        let before = rss_kib();
        let (tx, rx) = crossbeam_channel::bounded::<(u64, Vec<Box<[u8]>>)>(64);
        let freer = coroutines::spawn(move || {
            let mut sum = 0u64;
            for (id, v) in rx {
                for b in &v {
                    sum += b.iter().map(|&x| x as u64).sum::<u64>();
                }
                sum += id;
            }
            sum
        });
        let hs: Vec<_> = (0..1000u64)
            .map(|i| {
                let tx = tx.clone();
                coroutines::spawn(move || {
                    let mut rng = common::Rng(i * 7919 + 1);
                    let mut sent = 0u64;
                    for round in 0..20u64 {
                        let mut map = std::collections::BTreeMap::new();
                        for k in 0..(rng.next() % 200) {
                            map.insert(k, format!("{i}-{round}-{k}"));
                        }
                        let total: usize = map.values().map(String::len).sum();
                        assert!(total >= map.len());
                        let mut keep = Vec::new();
                        for _ in 0..4 {
                            let len = (rng.next() % 20_000) as usize;
                            keep.push(vec![(i % 251) as u8; len].into_boxed_slice());
                        }
                        for b in &keep {
                            sent += b.len() as u64 * (i % 251);
                        }
                        sent += i;
                        tx.send((i, keep)).unwrap();
                        if round % 5 == 0 {
                            std::thread::sleep(Duration::from_micros(100));
                        }
                    }
                    sent
                })
            })
            .collect();
        drop(tx);
        let sent: u64 = join_all(hs).into_iter().sum();
        let freed = freer.join().unwrap();
        assert_eq!(sent, freed);
        let after = rss_kib();
        eprintln!("rss before {before} KiB after {after} KiB");
        assert!(
            after < before + 1024 * 1024,
            "resident memory grew {} KiB",
            after - before
        );
    });
}

/// A parallel grep: a temp tree of 200 files in nested directories walked
/// by one coroutine (walkdir), paths handed over a channel to 8 worker
/// coroutines that read each file and count regex matches per line;
/// totals equal a sequential grep on the main thread.
#[test]
fn parallel_grep_worker_pool() {
    in_children("parallel_grep_worker_pool", || {
        let dir = tempfile::tempdir().unwrap();
        for i in 0..200u64 {
            let sub = dir.path().join(format!("d{}/e{}", i % 7, i % 3));
            std::fs::create_dir_all(&sub).unwrap();
            std::fs::write(
                sub.join(format!("f{i}.txt")),
                corpus(i + 500, 20_000 + (i as usize * 311) % 30_000),
            )
            .unwrap();
        }
        let re = regex::Regex::new(r"(?m)^(?:executor|stack) .*\d{3,}").unwrap();
        let grep = |text: &str, re: &regex::Regex| -> (u64, u64) {
            let mut lines = 0;
            let mut hits = 0;
            for l in text.lines() {
                let n = re.find_iter(l).count() as u64;
                if n > 0 {
                    lines += 1;
                    hits += n;
                }
            }
            (lines, hits)
        };
        let mut want = (0u64, 0u64, 0u64);
        for e in walkdir::WalkDir::new(dir.path()) {
            let e = e.unwrap();
            if e.file_type().is_file() {
                let t = std::fs::read_to_string(e.path()).unwrap();
                let (l, h) = grep(&t, &re);
                want = (want.0 + 1, want.1 + l, want.2 + h);
            }
        }
        assert_eq!(want.0, 200);
        let (tx, rx) = crossbeam_channel::bounded::<std::path::PathBuf>(16);
        let root = dir.path().to_owned();
        let walker = coroutines::spawn(move || {
            for e in walkdir::WalkDir::new(root).sort_by_file_name() {
                let e = e.unwrap();
                if e.file_type().is_file() {
                    tx.send(e.into_path()).unwrap();
                }
            }
        });
        let workers: Vec<_> = (0..8)
            .map(|_| {
                let (rx, re) = (rx.clone(), re.clone());
                coroutines::spawn(move || {
                    let mut acc = (0u64, 0u64, 0u64);
                    for p in rx {
                        let mut f = std::fs::File::open(&p).unwrap();
                        let mut t = String::new();
                        f.read_to_string(&mut t).unwrap();
                        let (l, h) = grep(&t, &re);
                        acc = (acc.0 + 1, acc.1 + l, acc.2 + h);
                    }
                    acc
                })
            })
            .collect();
        drop(rx);
        walker.join().unwrap();
        let got = join_all(workers)
            .into_iter()
            .fold((0, 0, 0), |a, b| (a.0 + b.0, a.1 + b.1, a.2 + b.2));
        assert_eq!(got, want);
        assert!(want.2 > 0);
    });
}

/// A heartbeat shape: 100 coroutines tick every 5 ms for 20 ticks while
/// two CPU hogs run: no sleep ends early, every loop finishes within a
/// generous bound, the hogs make progress.
#[test]
fn heartbeat_sleeps_beside_hogs() {
    in_children("heartbeat_sleeps_beside_hogs", || {
        let stop = Arc::new(AtomicBool::new(false));
        let count = Arc::new(AtomicU64::new(0));
        let hogs: Vec<_> = (0..2)
            .map(|_| {
                let (stop, count) = (stop.clone(), count.clone());
                coroutines::spawn(move || common::hog(stop, count))
            })
            .collect();
        let beats: Vec<_> = (0..100u64)
            .map(|_| {
                coroutines::spawn(move || {
                    let t0 = Instant::now();
                    let tick = Duration::from_millis(5);
                    let mut worst = Duration::ZERO;
                    for _ in 0..20 {
                        let t = Instant::now();
                        std::thread::sleep(tick);
                        let e = t.elapsed();
                        assert!(e >= tick, "a sleep of {tick:?} ended after {e:?}");
                        worst = worst.max(e);
                    }
                    (t0.elapsed(), worst)
                })
            })
            .collect();
        let res = join_all(beats);
        stop.store(true, Ordering::SeqCst);
        join_all(hogs);
        let longest = res.iter().map(|r| r.0).max().unwrap();
        let worst = res.iter().map(|r| r.1).max().unwrap();
        eprintln!("heartbeat: longest loop {longest:?}, worst tick {worst:?}");
        assert!(longest < Duration::from_secs(10), "{longest:?}");
        assert!(count.load(Ordering::SeqCst) > 0);
    });
}

/// Process pipelines from 12 coroutines at once: `tr a-z A-Z | sort |
/// uniq -c`, each child's stdout handed to the next as its stdin
/// (`Stdio::from`), the input fed by a writer coroutine while the reader
/// collects the output; counts equal the input's word counts.
#[test]
fn process_pipeline_chain() {
    in_children("process_pipeline_chain", || {
        use std::process::{Command, Stdio};
        let hs: Vec<_> = (0..12u64)
            .map(|i| {
                coroutines::spawn(move || {
                    let words = ["alpha", "beta", "gamma", "delta", "eps"];
                    let mut rng = common::Rng(i + 3);
                    let mut input = String::new();
                    let mut want = std::collections::BTreeMap::new();
                    for _ in 0..20_000 {
                        let w = words[(rng.next() % 5) as usize];
                        input.push_str(w);
                        input.push('\n');
                        *want.entry(w.to_ascii_uppercase()).or_insert(0u64) += 1;
                    }
                    let mut tr = Command::new("tr")
                        .args(["a-z", "A-Z"])
                        .stdin(Stdio::piped())
                        .stdout(Stdio::piped())
                        .spawn()
                        .unwrap();
                    let mut sort = Command::new("sort")
                        .stdin(Stdio::from(tr.stdout.take().unwrap()))
                        .stdout(Stdio::piped())
                        .spawn()
                        .unwrap();
                    let uniq = Command::new("uniq")
                        .arg("-c")
                        .stdin(Stdio::from(sort.stdout.take().unwrap()))
                        .stdout(Stdio::piped())
                        .spawn()
                        .unwrap();
                    let mut stdin = tr.stdin.take().unwrap();
                    let writer = coroutines::spawn(move || {
                        stdin.write_all(input.as_bytes()).unwrap();
                    });
                    let out = uniq.wait_with_output().unwrap();
                    writer.join().unwrap();
                    assert!(tr.wait().unwrap().success());
                    assert!(sort.wait().unwrap().success());
                    assert!(out.status.success());
                    let mut got = std::collections::BTreeMap::new();
                    for l in String::from_utf8(out.stdout).unwrap().lines() {
                        let mut it = l.split_whitespace();
                        let n: u64 = it.next().unwrap().parse().unwrap();
                        got.insert(it.next().unwrap().to_string(), n);
                    }
                    assert_eq!(got, want);
                    got.values().sum::<u64>()
                })
            })
            .collect();
        assert_eq!(join_all(hs).into_iter().sum::<u64>(), 12 * 20_000);
    });
}

/// Fork-join recursion: a parallel quicksort that spawns a coroutine for
/// one half and recurses into the other, joining it (the joiner parks;
/// spawn-then-join stays on its executor), down to 1,024 elements: about
/// 500 spawns per sort, 8 sorts at once, each result sorted and a
/// permutation of its input.
#[test]
fn fork_join_quicksort() {
    in_children("fork_join_quicksort", || {
        fn quicksort(mut v: Vec<u64>) -> Vec<u64> {
            if v.len() <= 1024 {
                v.sort_unstable();
                return v;
            }
            let pivot = {
                let (a, b, c) = (v[0], v[v.len() / 2], v[v.len() - 1]);
                a.max(b.min(c)).min(b.max(c))
            };
            let (mut lo, mut eq, mut hi) = (Vec::new(), Vec::new(), Vec::new());
            for x in v.drain(..) {
                match x.cmp(&pivot) {
                    std::cmp::Ordering::Less => lo.push(x),
                    std::cmp::Ordering::Equal => eq.push(x),
                    std::cmp::Ordering::Greater => hi.push(x),
                }
            }
            let h = coroutines::spawn(move || quicksort(lo));
            let hi = quicksort(hi);
            let mut out = h.join().unwrap();
            out.extend(eq);
            out.extend(hi);
            out
        }
        let hs: Vec<_> = (0..8u64)
            .map(|i| {
                coroutines::spawn(move || {
                    let mut rng = common::Rng(i * 31 + 7);
                    let v: Vec<u64> = (0..200_000).map(|_| rng.next() % 1_000_000).collect();
                    let sum: u64 = v.iter().sum();
                    let xor = v.iter().fold(0, |a, &x| a ^ x.wrapping_mul(0x9E37_79B9));
                    let s = quicksort(v);
                    assert_eq!(s.len(), 200_000);
                    assert!(s.windows(2).all(|w| w[0] <= w[1]));
                    assert_eq!(s.iter().sum::<u64>(), sum);
                    assert_eq!(
                        s.iter().fold(0, |a, &x| a ^ x.wrapping_mul(0x9E37_79B9)),
                        xor
                    );
                })
            })
            .collect();
        join_all(hs);
    });
}

/// Socket corner cases that threads rely on: `shutdown(Read)` of a
/// socket another coroutine is blocked reading returns it `Ok(0)`;
/// `shutdown(Both)` does too and the peer sees EOF; `peek` does not
/// consume; a socket the user set non-blocking reports `WouldBlock`;
/// `set_read_timeout` times out; `connect_timeout` to a closed port is
/// refused. 16 coroutines at once.
#[test]
fn socket_shutdown_peek_nonblocking() {
    in_children("socket_shutdown_peek_nonblocking", || {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let (tx, rx) = std::sync::mpsc::channel::<TcpStream>();
        coroutines::spawn(move || {
            for s in l.incoming() {
                if tx.send(s.unwrap()).is_err() {
                    return;
                }
            }
        });
        let rx = Arc::new(Mutex::new(rx));
        let hs: Vec<_> = (0..16u64)
            .map(|i| {
                let rx = rx.clone();
                coroutines::spawn(move || {
                    let mut c = TcpStream::connect(addr).unwrap();
                    let mut s = rx.lock().unwrap().recv().unwrap();
                    // peek, then read the same bytes.
                    c.write_all(b"hello").unwrap();
                    let mut b = [0u8; 5];
                    let mut got = 0;
                    while got < 5 {
                        got = s.peek(&mut b).unwrap();
                    }
                    assert_eq!(&b, b"hello");
                    s.read_exact(&mut b).unwrap();
                    assert_eq!(&b, b"hello");
                    // Non-blocking by the user's choice: WouldBlock, then data.
                    s.set_nonblocking(true).unwrap();
                    assert_eq!(
                        s.read(&mut b).unwrap_err().kind(),
                        std::io::ErrorKind::WouldBlock
                    );
                    s.set_nonblocking(false).unwrap();
                    // A read timeout with nothing sent.
                    s.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
                    let t = Instant::now();
                    let e = s.read(&mut b).unwrap_err();
                    assert!(
                        matches!(
                            e.kind(),
                            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                        ),
                        "{e:?}"
                    );
                    assert!(t.elapsed() >= Duration::from_millis(20));
                    s.set_read_timeout(None).unwrap();
                    // shutdown(Read or Both) wakes a reader blocked on the socket.
                    let s2 = s.try_clone().unwrap();
                    let reader = coroutines::spawn(move || {
                        let mut s2 = s2;
                        let mut b = [0u8; 16];
                        s2.read(&mut b).unwrap()
                    });
                    std::thread::sleep(Duration::from_millis(10));
                    let how = if i % 2 == 0 {
                        std::net::Shutdown::Read
                    } else {
                        std::net::Shutdown::Both
                    };
                    s.shutdown(how).unwrap();
                    assert_eq!(reader.join().unwrap(), 0);
                    if how == std::net::Shutdown::Both {
                        let mut rest = Vec::new();
                        c.read_to_end(&mut rest).unwrap();
                        assert!(rest.is_empty());
                    }
                })
            })
            .collect();
        join_all(hs);
        // A closed port: refused, not a hang.
        let closed = {
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        let e =
            coroutines::spawn(move || TcpStream::connect_timeout(&closed, Duration::from_secs(5)))
                .join()
                .unwrap()
                .unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused);
    });
}

/// 20,000 coroutines each sleeping 1–50 ms a few times (a timer heap
/// under load): no sleep ends early, all finish.
#[test]
fn twenty_thousand_sleepers() {
    in_children("twenty_thousand_sleepers", || {
        let early = Arc::new(AtomicUsize::new(0));
        let hs: Vec<_> = (0..20_000u64)
            .map(|i| {
                let early = early.clone();
                coroutines::spawn(move || {
                    let mut rng = common::Rng(i + 1);
                    for _ in 0..3 {
                        let d = Duration::from_micros(1000 + rng.next() % 49_000);
                        let t = Instant::now();
                        std::thread::sleep(d);
                        if t.elapsed() < d {
                            early.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                    1u64
                })
            })
            .collect();
        assert_eq!(join_all(hs).into_iter().sum::<u64>(), 20_000);
        assert_eq!(early.load(Ordering::SeqCst), 0);
    });
}

/// A child killed while coroutines read its stdout and wait for it: the
/// readers see EOF, `wait` reports the signal; 16 children at once.
#[test]
fn child_killed_while_read() {
    in_children("child_killed_while_read", || {
        use std::os::unix::process::ExitStatusExt;
        use std::process::{Command, Stdio};
        let hs: Vec<_> = (0..16)
            .map(|_| {
                coroutines::spawn(|| {
                    let mut child = Command::new("sh")
                        .args(["-c", "echo ready; exec sleep 30"])
                        .stdout(Stdio::piped())
                        .spawn()
                        .unwrap();
                    let mut out = child.stdout.take().unwrap();
                    let reader = coroutines::spawn(move || {
                        let mut v = Vec::new();
                        out.read_to_end(&mut v).unwrap();
                        v
                    });
                    std::thread::sleep(Duration::from_millis(30));
                    let t = Instant::now();
                    child.kill().unwrap();
                    let st = child.wait().unwrap();
                    assert_eq!(st.signal(), Some(libc::SIGKILL));
                    assert_eq!(reader.join().unwrap(), b"ready\n");
                    t.elapsed()
                })
            })
            .collect();
        for d in join_all(hs) {
            assert!(d < Duration::from_secs(10), "{d:?}");
        }
    });
}

/// `std::io::copy` from a file to a socket (std uses `sendfile`) and from
/// a child's stdout pipe to a socket (`splice`), to clients that read
/// slowly with a small receive buffer, so the copies meet a full socket
/// again and again; 12 clients of each kind, every byte checked.
#[test]
fn sendfile_and_splice_to_slow_readers() {
    in_children("sendfile_and_splice_to_slow_readers", || {
        use std::process::{Command, Stdio};
        const LEN: usize = 3 << 20;
        let dir = tempfile::tempdir().unwrap();
        let path = Arc::new(dir.path().join("blob"));
        let data = Arc::new(corpus(77, LEN));
        std::fs::write(&*path, &*data).unwrap();
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let p2 = path.clone();
        coroutines::spawn(move || {
            for (n, s) in l.incoming().enumerate() {
                let mut s = s.unwrap();
                let path = p2.clone();
                coroutines::spawn(move || {
                    let copied = if n % 2 == 0 {
                        let mut f = std::fs::File::open(&*path).unwrap();
                        std::io::copy(&mut f, &mut s).unwrap()
                    } else {
                        let mut child = Command::new("cat")
                            .arg(&*path)
                            .stdout(Stdio::piped())
                            .spawn()
                            .unwrap();
                        let mut out = child.stdout.take().unwrap();
                        let c = std::io::copy(&mut out, &mut s).unwrap();
                        assert!(child.wait().unwrap().success());
                        c
                    };
                    assert_eq!(copied, LEN as u64);
                });
            }
        });
        let hs: Vec<_> = (0..24u64)
            .map(|i| {
                let data = data.clone();
                coroutines::spawn(move || {
                    let s = socket_with_small_rcvbuf(addr);
                    let mut s = s;
                    let mut got = Vec::with_capacity(LEN);
                    let mut buf = vec![0u8; 16 << 10];
                    let mut reads = 0u64;
                    loop {
                        let n = s.read(&mut buf).unwrap();
                        if n == 0 {
                            break;
                        }
                        got.extend_from_slice(&buf[..n]);
                        reads += 1;
                        if reads % (20 + i) == 0 {
                            std::thread::sleep(Duration::from_millis(1));
                        }
                    }
                    assert_eq!(got.len(), LEN);
                    assert!(got == *data, "client {i}: bytes differ");
                    got.len()
                })
            })
            .collect();
        assert_eq!(join_all(hs).into_iter().sum::<usize>(), 24 * LEN);
    });
}

/// A client socket with a 4 KiB receive buffer (set before connecting, so
/// the window stays small).
fn socket_with_small_rcvbuf(addr: std::net::SocketAddr) -> TcpStream {
    use std::os::fd::FromRawFd;
    // SAFETY: plain socket creation; the fd is owned by the TcpStream below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    assert!(fd >= 0);
    let size: libc::c_int = 4096;
    // SAFETY: passes a live c_int and its size.
    let r = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&size as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(r, 0);
    let std::net::SocketAddr::V4(a) = addr else {
        panic!("IPv4 expected")
    };
    let sin = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: a.port().to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(*a.ip()).to_be(),
        },
        sin_zero: [0; 8],
    };
    // SAFETY: passes a live sockaddr_in and its size.
    let r = unsafe {
        libc::connect(
            fd,
            (&sin as *const libc::sockaddr_in).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        )
    };
    assert_eq!(r, 0, "{}", std::io::Error::last_os_error());
    // SAFETY: fd is a connected socket this function owns.
    unsafe { TcpStream::from_raw_fd(fd) }
}

/// `getaddrinfo` (a helper thread per call) from 200 coroutines at once:
/// `localhost` resolves to the loopback, connecting by name works.
#[test]
fn resolve_localhost_from_many_coroutines() {
    in_children("resolve_localhost_from_many_coroutines", || {
        use std::net::ToSocketAddrs;
        let addr = std_echo_server();
        let port = addr.port();
        let hs: Vec<_> = (0..200u64)
            .map(|i| {
                coroutines::spawn(move || {
                    let addrs: Vec<_> = ("localhost", port).to_socket_addrs().unwrap().collect();
                    assert!(addrs.iter().any(|a| a.ip().is_loopback()), "{addrs:?}");
                    if i % 10 == 0 {
                        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
                        s.write_all(b"ping").unwrap();
                        let mut b = [0u8; 4];
                        s.read_exact(&mut b).unwrap();
                        assert_eq!(&b, b"ping");
                    }
                    addrs.len()
                })
            })
            .collect();
        assert!(join_all(hs).into_iter().all(|n| n >= 1));
    });
}

/// An in-process connection hand-off: an acceptor coroutine reads the
/// first bytes of each connection itself, then passes the socket to a
/// worker coroutine over a Unix socket (`SCM_RIGHTS`) and closes its own
/// number; the worker reads the rest with blocking std calls. On threads
/// all 20 exchanges succeed. Before the runtime tracked in-process
/// `SCM_RIGHTS` hand-offs (interpose/fdpass.rs), 20 of 20 failed with
/// WouldBlock: the acceptor's read had made the description non-blocking.
#[test]
fn scm_rights_handoff_of_a_used_socket() {
    in_children("scm_rights_handoff_of_a_used_socket", || {
        use std::os::fd::{AsRawFd, FromRawFd};
        use std::os::unix::net::UnixStream;
        const N: usize = 20;
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let (a, b) = UnixStream::pair().unwrap();
        let acceptor = coroutines::spawn(move || {
            for s in l.incoming().take(N) {
                let mut s = s.unwrap();
                let mut head = [0u8; 4];
                s.read_exact(&mut head).unwrap();
                assert_eq!(&head, b"HEAD");
                common::send_fd(&a, s.as_raw_fd());
            }
        });
        let worker = coroutines::spawn(move || {
            let mut ok = 0;
            for _ in 0..N {
                let fd = common::recv_fd(&b);
                // SAFETY: the fd was just received and is owned here.
                let mut s = unsafe { TcpStream::from_raw_fd(fd) };
                let mut buf = [0u8; 5];
                match s.read_exact(&mut buf) {
                    Ok(()) => {
                        s.write_all(&buf).unwrap();
                        ok += 1;
                    }
                    Err(e) => eprintln!("worker: {e}"),
                }
            }
            ok
        });
        let clients = coroutines::spawn(move || {
            let mut ok = 0;
            for _ in 0..N {
                let mut c = TcpStream::connect(addr).unwrap();
                c.write_all(b"HEAD").unwrap();
                std::thread::sleep(Duration::from_millis(5));
                c.write_all(b"hello").unwrap();
                let mut r = [0u8; 5];
                if c.read_exact(&mut r).is_ok() && &r == b"hello" {
                    ok += 1;
                }
            }
            ok
        });
        acceptor.join().unwrap();
        let (w, c) = (worker.join().unwrap(), clients.join().unwrap());
        assert_eq!((w, c), (N, N));
    });
}
