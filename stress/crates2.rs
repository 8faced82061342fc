//! More popular crates used inside coroutines the way their users use
//! them on threads (see also `stress/crates.rs`): HTTP clients and
//! servers, signal handlers, channels with timeouts, connection pools,
//! file watchers, C compressors, system information, clocks and ids.
//!
//! Each test runs twice in child processes (the runtime is global per
//! process) with 2 executors: once with the default time slice and once
//! with `COROUTINES_SLICE=100us`, each with a watchdog: a hang fails the
//! test. Every child prints the executor-blocking reports it saw.

mod common;

use common::{corpus, join_all};

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const CHILD: &str = "COROUTINES_CRATES2_CHILD";

/// Runs `body` in a child with 2 executors and the default slice, then in
/// one with a 100 µs slice (`common::battery`: watchdog, blocking reports).
fn in_children(name: &str, body: impl Fn()) {
    common::battery(CHILD, name, body);
}

/// A minimal HTTP/1.1 server on std::net, each connection served by its
/// own coroutine (keep-alive). `GET /n/<k>` answers `2k`. Returns the
/// address; the accept loop runs until the process exits.
fn std_http_server() -> std::net::SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    coroutines::spawn(move || {
        for s in l.incoming() {
            let s = s.unwrap();
            coroutines::spawn(move || serve_conn(s));
        }
    });
    addr
}

fn serve_conn(mut s: TcpStream) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        // Read one request head.
        let end = loop {
            if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break p + 4;
            }
            match s.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
        buf.drain(..end);
        let path = head.split_whitespace().nth(1).unwrap_or("/").to_string();
        let body = match path.strip_prefix("/n/") {
            Some(k) => (k.parse::<u64>().unwrap() * 2).to_string(),
            None => "hello".to_string(),
        };
        let resp = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nContent-Type: text/plain\r\n\r\n{}",
            body.len(),
            body
        );
        if s.write_all(resp.as_bytes()).is_err() {
            return;
        }
    }
}

/// reqwest's blocking client (its own tokio runtime on an OS thread it
/// starts; the caller waits for each response with `thread::park`): 32
/// coroutines share one `Client`, 8 more build a `Client` each (8 runtime
/// threads started from coroutines), against a std::net server whose
/// connections are coroutines.
#[test]
fn reqwest_blocking_clients() {
    in_children("reqwest_blocking_clients", || {
        let addr = std_http_server();
        let shared = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap();
        let mut hs: Vec<_> = (0..32u64)
            .map(|i| {
                let c = shared.clone();
                coroutines::spawn(move || {
                    let mut sum = 0;
                    for k in 0..20u64 {
                        let n = i * 1000 + k;
                        let r = c.get(format!("http://{addr}/n/{n}")).send().unwrap();
                        assert_eq!(r.status(), 200);
                        let v: u64 = r.text().unwrap().parse().unwrap();
                        assert_eq!(v, 2 * n);
                        sum += v;
                    }
                    sum
                })
            })
            .collect();
        hs.extend((32..40u64).map(|i| {
            coroutines::spawn(move || {
                let c = reqwest::blocking::Client::new();
                let mut sum = 0;
                for k in 0..20u64 {
                    let n = i * 1000 + k;
                    let v: u64 = c
                        .get(format!("http://{addr}/n/{n}"))
                        .send()
                        .unwrap()
                        .text()
                        .unwrap()
                        .parse()
                        .unwrap();
                    sum += v;
                }
                drop(c); // joins the client's runtime thread
                sum
            })
        }));
        let total: u64 = join_all(hs).into_iter().sum();
        let want: u64 = (0..40u64)
            .flat_map(|i| (0..20u64).map(move |k| 2 * (i * 1000 + k)))
            .sum();
        assert_eq!(total, want);
    });
}

/// ctrlc: the handler thread it starts waits on a pipe the SIGINT handler
/// writes; 16 coroutines wait (Condvar) for the flag the handler sets
/// while the process sends itself SIGINT three times.
#[test]
fn ctrlc_handler_wakes_coroutines() {
    in_children("ctrlc_handler_wakes_coroutines", || {
        let state = Arc::new((Mutex::new(0u32), std::sync::Condvar::new()));
        let st = state.clone();
        // Installed from a coroutine, as a program wrapped in `run` would.
        coroutines::run(move || {
            ctrlc::set_handler(move || {
                let (m, cv) = &*st;
                *m.lock().unwrap() += 1;
                cv.notify_all();
            })
            .unwrap();
        });
        let hs: Vec<_> = (0..16)
            .map(|_| {
                let state = state.clone();
                coroutines::spawn(move || {
                    let (m, cv) = &*state;
                    let mut seen = Vec::new();
                    let mut g = m.lock().unwrap();
                    let deadline = Instant::now() + Duration::from_secs(30);
                    while *g < 3 {
                        let last = *g;
                        g = cv
                            .wait_timeout_while(g, Duration::from_secs(30), |n| *n == last)
                            .unwrap()
                            .0;
                        seen.push(*g);
                        assert!(Instant::now() < deadline, "no SIGINT seen: {seen:?}");
                    }
                    *g
                })
            })
            .collect();
        for k in 1..=3u32 {
            std::thread::sleep(Duration::from_millis(30));
            unsafe { libc::kill(libc::getpid(), libc::SIGINT) };
            let t = Instant::now();
            while *state.0.lock().unwrap() < k {
                assert!(
                    t.elapsed() < Duration::from_secs(10),
                    "SIGINT {k} not handled"
                );
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        assert!(join_all(hs).iter().all(|&n| n == 3));
    });
}

/// crossbeam-channel `select!` with `recv_timeout`, `after` and `tick`:
/// producers are coroutines and OS threads; consumers are coroutines that
/// select over two channels, a ticker and a deadline. Every message
/// arrives exactly once; tickers tick at about their period.
#[test]
fn crossbeam_select_timeouts() {
    in_children("crossbeam_select_timeouts", || {
        use crossbeam_channel::{after, bounded, select, tick, unbounded};
        let (tx_a, rx_a) = bounded::<u64>(4);
        let (tx_b, rx_b) = unbounded::<u64>();
        const PER: u64 = 500;
        let mut producers = Vec::new();
        for p in 0..4u64 {
            let tx = tx_a.clone();
            producers.push(coroutines::spawn(move || {
                for k in 0..PER {
                    tx.send(p * PER + k).unwrap();
                    if k % 100 == 0 {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                }
            }));
        }
        let mut threads = Vec::new();
        for p in 4..6u64 {
            let tx = tx_b.clone();
            threads.push(std::thread::spawn(move || {
                for k in 0..PER {
                    tx.send(p * PER + k).unwrap();
                    if k % 50 == 0 {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                }
            }));
        }
        drop(tx_a);
        drop(tx_b);
        let consumers: Vec<_> = (0..3)
            .map(|_| {
                let (rx_a, rx_b) = (rx_a.clone(), rx_b.clone());
                coroutines::spawn(move || {
                    let ticker = tick(Duration::from_millis(5));
                    let deadline = after(Duration::from_secs(60));
                    let mut got = Vec::new();
                    let mut ticks = 0u32;
                    let (mut a_open, mut b_open) = (true, true);
                    while a_open || b_open {
                        let ra = if a_open { rx_a.clone() } else { crossbeam_channel::never() };
                        let rb = if b_open { rx_b.clone() } else { crossbeam_channel::never() };
                        select! {
                            recv(ra) -> m => match m { Ok(v) => got.push(v), Err(_) => a_open = false },
                            recv(rb) -> m => match m { Ok(v) => got.push(v), Err(_) => b_open = false },
                            recv(ticker) -> _ => ticks += 1,
                            recv(deadline) -> _ => panic!("consumer timed out"),
                        }
                    }
                    (got, ticks)
                })
            })
            .collect();
        // A lone coroutine timing recv_timeout on an idle channel.
        let (_keep, idle) = bounded::<()>(1);
        let timer = coroutines::spawn(move || {
            let mut late = Vec::new();
            for _ in 0..20 {
                let t = Instant::now();
                assert!(idle.recv_timeout(Duration::from_millis(10)).is_err());
                let e = t.elapsed();
                assert!(e >= Duration::from_millis(10), "woke early: {e:?}");
                late.push(e);
            }
            late
        });
        join_all(producers);
        for t in threads {
            t.join().unwrap();
        }
        let mut all = Vec::new();
        for (got, _ticks) in join_all(consumers) {
            all.extend(got);
        }
        all.sort();
        assert_eq!(all, (0..6 * PER).collect::<Vec<_>>());
        let late = timer.join().unwrap();
        let mut sorted = late.clone();
        sorted.sort();
        assert!(
            sorted[10] < Duration::from_millis(60),
            "recv_timeout(10ms) median {:?}",
            sorted[10]
        );
    });
}

/// parking_lot: `Condvar::wait_for` timeouts measured by 32 coroutines
/// (each times out once, then is notified), and an `RwLock` with
/// upgradable reads: 16 coroutines increment a counter through
/// upgradable-read -> upgrade, 16 readers check an invariant, under
/// preemption.
#[test]
fn parking_lot_condvar_rwlock_upgradable() {
    in_children("parking_lot_condvar_rwlock_upgradable", || {
        use parking_lot::{Condvar, Mutex, RwLock, RwLockUpgradableReadGuard};
        let pair = Arc::new((Mutex::new(0u32), Condvar::new()));
        let waiters: Vec<_> = (0..32)
            .map(|_| {
                let pair = pair.clone();
                coroutines::spawn(move || {
                    let (m, cv) = &*pair;
                    let mut g = m.lock();
                    let t = Instant::now();
                    let r = cv.wait_for(&mut g, Duration::from_millis(20));
                    let e = t.elapsed();
                    assert!(r.timed_out() || *g > 0);
                    assert!(
                        !r.timed_out() || e >= Duration::from_millis(20),
                        "timed out early: {e:?}"
                    );
                    while *g == 0 {
                        cv.wait_for(&mut g, Duration::from_secs(30));
                    }
                    (e, *g)
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(100));
        *pair.0.lock() = 7;
        pair.1.notify_all();
        for (e, v) in join_all(waiters) {
            assert_eq!(v, 7);
            assert!(e < Duration::from_secs(5), "wait_for(20ms) took {e:?}");
        }

        // (a, b) with b == 2a always.
        let lock = Arc::new(RwLock::new((0u64, 0u64)));
        let stop = Arc::new(AtomicBool::new(false));
        let writers: Vec<_> = (0..16)
            .map(|_| {
                let lock = lock.clone();
                coroutines::spawn(move || {
                    let mut done = 0;
                    while done < 500 {
                        let g = lock.upgradable_read();
                        let (a, b) = *g;
                        assert_eq!(b, 2 * a);
                        // Spin a little inside the upgradable section so
                        // preemption lands here.
                        let mut x = a;
                        for i in 0..200u64 {
                            x = x.wrapping_mul(31).wrapping_add(i);
                        }
                        std::hint::black_box(x);
                        let mut w = RwLockUpgradableReadGuard::upgrade(g);
                        w.0 += 1;
                        w.1 += 2;
                        done += 1;
                    }
                })
            })
            .collect();
        let readers: Vec<_> = (0..16)
            .map(|_| {
                let (lock, stop) = (lock.clone(), stop.clone());
                coroutines::spawn(move || {
                    let mut n = 0u64;
                    // At least 200 reads, even if the writers are done.
                    while n < 200 || !stop.load(Ordering::Relaxed) {
                        let g = lock.read();
                        assert_eq!(g.1, 2 * g.0);
                        n += 1;
                        drop(g);
                        if n % 64 == 0 {
                            coroutines::yield_now();
                        }
                    }
                    n
                })
            })
            .collect();
        join_all(writers);
        stop.store(true, Ordering::Relaxed);
        let reads: u64 = join_all(readers).into_iter().sum();
        assert!(reads >= 16 * 200);
        assert_eq!(*lock.read(), (16 * 500, 2 * 16 * 500));
    });
}

/// r2d2 + r2d2_sqlite (bundled SQLite): 64 coroutines share a pool of 8
/// connections to one WAL database file; each inserts 25 rows in small
/// transactions and reads its own rows back.
#[test]
fn r2d2_sqlite_pool() {
    in_children("r2d2_sqlite_pool", || {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pool.db");
        let mgr = r2d2_sqlite::SqliteConnectionManager::file(&path).with_init(|c| {
            c.busy_timeout(Duration::from_secs(30))?;
            c.execute_batch("PRAGMA journal_mode=WAL;")
        });
        let pool = r2d2::Pool::builder()
            .max_size(8)
            .connection_timeout(Duration::from_secs(60))
            .build(mgr)
            .unwrap();
        pool.get()
            .unwrap()
            .execute_batch("CREATE TABLE t (who INTEGER, k INTEGER, v TEXT);")
            .unwrap();
        let hs: Vec<_> = (0..64i64)
            .map(|who| {
                let pool = pool.clone();
                coroutines::spawn(move || {
                    for k in 0..25i64 {
                        let mut c = pool.get().unwrap();
                        let tx = c.transaction().unwrap();
                        tx.execute(
                            "INSERT INTO t (who, k, v) VALUES (?1, ?2, ?3)",
                            rusqlite_params(who, k),
                        )
                        .unwrap();
                        tx.commit().unwrap();
                        drop(c);
                        if k % 5 == 0 {
                            std::thread::sleep(Duration::from_micros(300));
                        }
                    }
                    let c = pool.get().unwrap();
                    let n: i64 = c
                        .query_row("SELECT COUNT(*) FROM t WHERE who = ?1", [who], |r| r.get(0))
                        .unwrap();
                    n
                })
            })
            .collect();
        assert!(join_all(hs).iter().all(|&n| n == 25));
        let c = pool.get().unwrap();
        let n: i64 = c
            .query_row("SELECT COUNT(*) FROM t", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 64 * 25);
        let state = pool.state();
        assert!(state.connections <= 8, "{state:?}");
    });
}

fn rusqlite_params(who: i64, k: i64) -> (i64, i64, String) {
    (who, k, format!("row {who}/{k}"))
}

/// notify (inotify; its event loop is an OS thread it starts): a watcher
/// created in a coroutine delivers events through a std mpsc channel to a
/// coroutine, while other coroutines create 40 files.
#[test]
fn notify_inotify_events() {
    in_children("notify_inotify_events", || {
        use notify::{RecursiveMode, Watcher};
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        let (tx, rx) = std::sync::mpsc::channel::<notify::Result<notify::Event>>();
        let r = root.clone();
        let watcher = coroutines::spawn(move || {
            let mut w = notify::recommended_watcher(tx).unwrap();
            w.watch(&r, RecursiveMode::NonRecursive).unwrap();
            w
        })
        .join()
        .unwrap();
        let collector = coroutines::spawn(move || {
            let mut names = std::collections::BTreeSet::new();
            let t = Instant::now();
            while names.len() < 40 && t.elapsed() < Duration::from_secs(30) {
                if let Ok(ev) = rx.recv_timeout(Duration::from_millis(100)) {
                    for p in ev.unwrap().paths {
                        let n = p.file_name().unwrap().to_string_lossy().into_owned();
                        if n.starts_with("f-") {
                            names.insert(n);
                        }
                    }
                }
            }
            names.len()
        });
        let writers: Vec<_> = (0..4)
            .map(|w| {
                let root = root.clone();
                coroutines::spawn(move || {
                    for k in 0..10 {
                        std::fs::write(root.join(format!("f-{w}-{k}")), b"x").unwrap();
                        std::thread::sleep(Duration::from_millis(2));
                    }
                })
            })
            .collect();
        join_all(writers);
        assert_eq!(collector.join().unwrap(), 40);
        drop(watcher);
    });
}

/// flume: a bounded MPMC channel between coroutine and OS-thread
/// producers and coroutine consumers using `recv_timeout` and a
/// `Selector` with a timeout.
#[test]
fn flume_mpmc_timeouts() {
    in_children("flume_mpmc_timeouts", || {
        let (tx, rx) = flume::bounded::<u64>(8);
        let (tx2, rx2) = flume::unbounded::<u64>();
        const PER: u64 = 1000;
        let mut prods: Vec<_> = (0..4u64)
            .map(|p| {
                let tx = tx.clone();
                coroutines::spawn(move || {
                    for k in 0..PER {
                        tx.send(p * PER + k).unwrap();
                    }
                })
            })
            .collect();
        let th = {
            let tx2 = tx2.clone();
            std::thread::spawn(move || {
                for k in 0..PER {
                    tx2.send(4 * PER + k).unwrap();
                    if k % 100 == 0 {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                }
            })
        };
        prods.push(coroutines::spawn(move || {
            for k in 0..PER {
                tx2.send(5 * PER + k).unwrap();
            }
        }));
        drop(tx);
        let cons: Vec<_> = (0..4)
            .map(|c| {
                let (rx, rx2) = (rx.clone(), rx2.clone());
                coroutines::spawn(move || {
                    let mut got = Vec::new();
                    let (mut a, mut b) = (true, true);
                    while a || b {
                        if c % 2 == 0 {
                            let mut sel = flume::Selector::new();
                            if a {
                                sel = sel.recv(&rx, |r| r.map(|v| (0, v)).map_err(|_| 0));
                            }
                            if b {
                                sel = sel.recv(&rx2, |r| r.map(|v| (1, v)).map_err(|_| 1));
                            }
                            match sel.wait_timeout(Duration::from_millis(50)) {
                                Ok(Ok((_, v))) => got.push(v),
                                Ok(Err(0)) => a = false,
                                Ok(Err(_)) => b = false,
                                Err(_) => {}
                            }
                        } else {
                            if a {
                                match rx.recv_timeout(Duration::from_millis(5)) {
                                    Ok(v) => got.push(v),
                                    Err(flume::RecvTimeoutError::Disconnected) => a = false,
                                    Err(_) => {}
                                }
                            }
                            if b {
                                match rx2.recv_timeout(Duration::from_millis(5)) {
                                    Ok(v) => got.push(v),
                                    Err(flume::RecvTimeoutError::Disconnected) => b = false,
                                    Err(_) => {}
                                }
                            }
                        }
                    }
                    got
                })
            })
            .collect();
        join_all(prods);
        th.join().unwrap();
        let mut all: Vec<u64> = join_all(cons).into_iter().flatten().collect();
        all.sort();
        assert_eq!(all, (0..6 * PER).collect::<Vec<_>>());
    });
}

/// std `Barrier`, `OnceLock` and `LazyLock` under preemption: 24
/// coroutines pass a barrier 50 times (exactly one leader per round),
/// race to initialise a `OnceLock` whose initialiser is slow (runs once),
/// and read a `LazyLock` whose initialiser spins.
#[test]
fn std_barrier_oncelock_lazylock() {
    in_children("std_barrier_oncelock_lazylock", || {
        use std::sync::{Barrier, LazyLock, OnceLock};
        static INITS: AtomicUsize = AtomicUsize::new(0);
        static LAZY: LazyLock<u64> = LazyLock::new(|| {
            INITS.fetch_add(1, Ordering::SeqCst);
            let mut x = 1u64;
            for i in 0..3_000_000u64 {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(i);
            }
            std::hint::black_box(x) | 1
        });
        static ONCE: OnceLock<String> = OnceLock::new();
        static ONCE_INITS: AtomicUsize = AtomicUsize::new(0);
        const N: usize = 24;
        let barrier = Arc::new(Barrier::new(N));
        let leaders = Arc::new(AtomicUsize::new(0));
        let round_sum = Arc::new(AtomicU64::new(0));
        let hs: Vec<_> = (0..N)
            .map(|i| {
                let (barrier, leaders, round_sum) =
                    (barrier.clone(), leaders.clone(), round_sum.clone());
                coroutines::spawn(move || {
                    let s = ONCE.get_or_init(|| {
                        ONCE_INITS.fetch_add(1, Ordering::SeqCst);
                        std::thread::sleep(Duration::from_millis(20));
                        format!("init by {i}")
                    });
                    let lazy = *LAZY;
                    for r in 0..50u64 {
                        round_sum.fetch_add(r, Ordering::SeqCst);
                        if barrier.wait().is_leader() {
                            leaders.fetch_add(1, Ordering::SeqCst);
                        }
                        // Everyone of round r added before anyone passed.
                        let min = (0..=r).sum::<u64>() * N as u64;
                        assert!(round_sum.load(Ordering::SeqCst) >= min);
                        if i % 3 == 0 {
                            let mut x = r;
                            for k in 0..20_000u64 {
                                x = x.wrapping_add(k * k);
                            }
                            std::hint::black_box(x);
                        }
                    }
                    (s.clone(), lazy)
                })
            })
            .collect();
        let res = join_all(hs);
        assert_eq!(leaders.load(Ordering::SeqCst), 50);
        assert_eq!(INITS.load(Ordering::SeqCst), 1);
        assert_eq!(ONCE_INITS.load(Ordering::SeqCst), 1);
        assert!(res.iter().all(|r| r == &res[0]));
    });
}

/// An axum (hyper 1.x) server on a multi-threaded tokio runtime started
/// inside a coroutine (its workers are OS threads), hit by 32 coroutine
/// clients with keep-alive std::net connections; then shut down
/// gracefully from a coroutine.
#[test]
fn axum_server_in_coroutine() {
    in_children("axum_server_in_coroutine", || {
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let server = coroutines::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                use axum::extract::Path;
                let app = axum::Router::new().route(
                    "/n/:k",
                    axum::routing::get(|Path(k): Path<u64>| async move { (2 * k).to_string() }),
                );
                let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                addr_tx.send(l.local_addr().unwrap()).unwrap();
                axum::serve(l, app)
                    .with_graceful_shutdown(async {
                        let _ = stop_rx.await;
                    })
                    .await
                    .unwrap();
            });
            "stopped"
        });
        let addr: std::net::SocketAddr = addr_rx.recv_timeout(Duration::from_secs(30)).unwrap();
        let hs: Vec<_> = (0..32u64)
            .map(|i| coroutines::spawn(move || http_get_loop(addr, i, 25)))
            .collect();
        let total: u64 = join_all(hs).into_iter().sum();
        let want: u64 = (0..32u64)
            .flat_map(|i| (0..25u64).map(move |k| 2 * (i * 1000 + k)))
            .sum();
        assert_eq!(total, want);
        coroutines::spawn(move || stop_tx.send(()).unwrap())
            .join()
            .unwrap();
        assert_eq!(server.join().unwrap(), "stopped");
    });
}

/// `n` keep-alive GETs of `/n/<i*1000+k>` on one std::net connection;
/// returns the sum of the answers.
fn http_get_loop(addr: std::net::SocketAddr, i: u64, n: u64) -> u64 {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut sum = 0;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    for k in 0..n {
        let q = i * 1000 + k;
        write!(s, "GET /n/{q} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let (head_end, len) = loop {
            if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..p]).to_ascii_lowercase();
                let len: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .unwrap()
                    .trim()
                    .parse()
                    .unwrap();
                assert!(head.starts_with("http/1.1 200"), "{head}");
                break (p + 4, len);
            }
            let m = s.read(&mut chunk).unwrap();
            assert!(m > 0, "server closed");
            buf.extend_from_slice(&chunk[..m]);
        };
        while buf.len() < head_end + len {
            let m = s.read(&mut chunk).unwrap();
            assert!(m > 0, "server closed");
            buf.extend_from_slice(&chunk[..m]);
        }
        let v: u64 = std::str::from_utf8(&buf[head_end..head_end + len])
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(v, 2 * q);
        sum += v;
        buf.drain(..head_end + len);
    }
    sum
}

/// `std::net::UdpSocket` with `set_read_timeout`: 16 coroutine pairs play
/// ping-pong; each side's timed-out `recv` returns `WouldBlock` after at
/// least its timeout, and no datagram is lost on loopback.
#[test]
fn udp_read_timeout() {
    in_children("udp_read_timeout", || {
        use std::net::UdpSocket;
        let hs: Vec<_> = (0..16)
            .map(|_| {
                coroutines::spawn(|| {
                    let a = UdpSocket::bind("127.0.0.1:0").unwrap();
                    let b = UdpSocket::bind("127.0.0.1:0").unwrap();
                    a.connect(b.local_addr().unwrap()).unwrap();
                    b.connect(a.local_addr().unwrap()).unwrap();
                    a.set_read_timeout(Some(Duration::from_millis(15))).unwrap();
                    b.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
                    // A timed-out read first.
                    let mut buf = [0u8; 64];
                    let t = Instant::now();
                    let e = a.recv(&mut buf).unwrap_err();
                    let el = t.elapsed();
                    assert!(
                        matches!(
                            e.kind(),
                            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                        ),
                        "{e:?}"
                    );
                    assert!(el >= Duration::from_millis(15), "timed out early: {el:?}");
                    assert!(el < Duration::from_secs(5), "timed out late: {el:?}");
                    let pong = coroutines::spawn(move || {
                        let mut buf = [0u8; 64];
                        for _ in 0..200 {
                            let n = b.recv(&mut buf).unwrap();
                            let v = u64::from_le_bytes(buf[..n].try_into().unwrap());
                            b.send(&(v + 1).to_le_bytes()).unwrap();
                        }
                    });
                    a.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
                    let mut v = 0u64;
                    for _ in 0..200 {
                        a.send(&v.to_le_bytes()).unwrap();
                        let n = a.recv(&mut buf).unwrap();
                        v = u64::from_le_bytes(buf[..n].try_into().unwrap());
                    }
                    pong.join().unwrap();
                    (el, v)
                })
            })
            .collect();
        for (_, v) in join_all(hs) {
            assert_eq!(v, 200);
        }
    });
}

/// sysinfo: 8 coroutines refresh process and CPU information (it reads
/// /proc, sleeps between CPU samples); each finds this process and its
/// threads.
#[test]
fn sysinfo_refresh() {
    in_children("sysinfo_refresh", || {
        let hs: Vec<_> = (0..8)
            .map(|_| {
                coroutines::spawn(|| {
                    let mut sys = sysinfo::System::new();
                    let pid = sysinfo::get_current_pid().unwrap();
                    sys.refresh_cpu_usage();
                    std::thread::sleep(sysinfo::MINIMUM_CPU_UPDATE_INTERVAL);
                    sys.refresh_cpu_usage();
                    sys.refresh_processes(sysinfo::ProcessesToUpdate::Some(&[pid]), true);
                    let p = sys.process(pid).expect("own process");
                    assert!(p.memory() > 0);
                    let exe = std::env::current_exe().unwrap();
                    assert_eq!(p.exe(), Some(exe.as_path()));
                    sys.cpus().len()
                })
            })
            .collect();
        let n = join_all(hs);
        assert!(n.iter().all(|&c| c == n[0] && c > 0));
    });
}

/// chrono's local time (tzdata from /etc/localtime or TZ) in 200
/// coroutines: every offset equals the one the main thread computed and
/// every timestamp is between two main-thread readings.
#[test]
fn chrono_local_time() {
    in_children("chrono_local_time", || {
        use chrono::{Local, Offset};
        let before = chrono::Utc::now();
        let off = Local::now().offset().fix();
        let hs: Vec<_> = (0..200)
            .map(|i| {
                coroutines::spawn(move || {
                    let mut v = Vec::new();
                    for _ in 0..20 {
                        let now = Local::now();
                        v.push((now.offset().fix(), now.with_timezone(&chrono::Utc)));
                        if i % 2 == 0 {
                            coroutines::yield_now();
                        }
                    }
                    let s = Local::now().format("%Y-%m-%d %H:%M:%S %z").to_string();
                    assert_eq!(s.len(), 25, "{s}");
                    v
                })
            })
            .collect();
        let res = join_all(hs);
        let after = chrono::Utc::now();
        for (o, t) in res.into_iter().flatten() {
            assert_eq!(o, off);
            assert!(t >= before && t <= after);
        }
    });
}

/// uuid v4 and getrandom from 1,000 coroutines: 10,000 distinct ids.
#[test]
fn uuid_getrandom_distinct() {
    in_children("uuid_getrandom_distinct", || {
        let hs: Vec<_> = (0..1000)
            .map(|_| {
                coroutines::spawn(|| {
                    let mut v = Vec::new();
                    for _ in 0..8 {
                        v.push(uuid::Uuid::new_v4().as_u128());
                    }
                    let mut b = [0u8; 16];
                    getrandom::getrandom(&mut b).unwrap();
                    v.push(u128::from_le_bytes(b));
                    coroutines::yield_now();
                    v.push(uuid::Uuid::new_v4().as_u128());
                    v
                })
            })
            .collect();
        let mut all: Vec<u128> = join_all(hs).into_iter().flatten().collect();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), 10_000);
    });
}

/// bzip2 (bundled C libbz2): 12 coroutines stream 512 KiB each through
/// a `BzEncoder` and back; one pair goes through a socket pair.
#[test]
fn bzip2_c_streaming() {
    in_children("bzip2_c_streaming", || {
        use bzip2::Compression;
        let hs: Vec<_> = (0..12u64)
            .map(|i| {
                coroutines::spawn(move || {
                    let data = corpus(i + 1, 512 << 10);
                    let mut enc = bzip2::write::BzEncoder::new(Vec::new(), Compression::new(9));
                    for c in data.chunks(7001) {
                        enc.write_all(c).unwrap();
                    }
                    let bz = enc.finish().unwrap();
                    assert!(bz.len() < data.len() / 2);
                    let mut back = Vec::new();
                    bzip2::read::BzDecoder::new(&bz[..])
                        .read_to_end(&mut back)
                        .unwrap();
                    assert!(back == data, "round trip {i} differs");
                    back.len()
                })
            })
            .collect();
        let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        let w = coroutines::spawn(move || {
            let data = corpus(77, 1 << 20);
            let mut enc = bzip2::write::BzEncoder::new(a, Compression::fast());
            enc.write_all(&data).unwrap();
            enc.finish().unwrap();
            data
        });
        let r = coroutines::spawn(move || {
            let mut out = Vec::new();
            bzip2::read::BzDecoder::new(b)
                .read_to_end(&mut out)
                .unwrap();
            out
        });
        assert!(join_all(hs).iter().all(|&n| n == 512 << 10));
        let sent = w.join().unwrap();
        assert!(r.join().unwrap() == sent);
    });
}

/// zstd (bundled C libzstd): 12 coroutines compress and decompress
/// 1 MiB each single-threaded; 4 more use zstd's multi-threaded mode
/// (its C worker threads started from a coroutine; the coroutine waits
/// for them on pthread condition variables inside C).
#[test]
fn zstd_c_single_and_multithreaded() {
    in_children("zstd_c_single_and_multithreaded", || {
        let hs: Vec<_> = (0..16u64)
            .map(|i| {
                coroutines::spawn(move || {
                    let data = corpus(i + 100, 1 << 20);
                    let mut enc = zstd::stream::write::Encoder::new(Vec::new(), 5).unwrap();
                    if i >= 12 {
                        enc.multithread(2).unwrap();
                    }
                    for c in data.chunks(9000) {
                        enc.write_all(c).unwrap();
                    }
                    let z = enc.finish().unwrap();
                    assert!(z.len() < data.len() / 2);
                    let back = zstd::stream::decode_all(&z[..]).unwrap();
                    assert!(back == data, "round trip {i} differs");
                    let one = zstd::bulk::compress(&data[..65536], 3).unwrap();
                    assert_eq!(zstd::bulk::decompress(&one, 65536).unwrap(), &data[..65536]);
                    back.len()
                })
            })
            .collect();
        assert!(join_all(hs).iter().all(|&n| n == 1 << 20));
    });
}

/// `fork` from a coroutine, the way daemonizing CLIs and pre-fork servers
/// do it (the `fork`/`daemonize` crates call `libc::fork`): the child
/// sleeps, writes to a pipe and a file with std, then `_exit`s; the parent
/// coroutine waits for it. 8 coroutines do that at once while others are
/// busy.
#[test]
fn fork_child_uses_blocking_std() {
    in_children("fork_child_uses_blocking_std", || {
        let stop = Arc::new(AtomicBool::new(false));
        let busy: Vec<_> = (0..2)
            .map(|_| {
                let stop = stop.clone();
                coroutines::spawn(move || {
                    let mut n = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        n = n.wrapping_add(1);
                    }
                    n
                })
            })
            .collect();
        let dir = tempfile::tempdir().unwrap();
        let hs: Vec<_> = (0..8)
            .map(|i| {
                let path = dir.path().join(format!("child-{i}"));
                coroutines::spawn(move || {
                    let (mut r, mut w) = std::io::pipe().unwrap();
                    let pid = unsafe { libc::fork() };
                    assert!(pid >= 0);
                    if pid == 0 {
                        // A stuck child must not outlive the test (it holds
                        // the test's output pipes).
                        unsafe { libc::alarm(10) };
                        drop(r);
                        std::thread::sleep(Duration::from_millis(5));
                        std::fs::write(&path, format!("hello {i}")).unwrap();
                        w.write_all(format!("child {i} ok").as_bytes()).unwrap();
                        drop(w);
                        unsafe { libc::_exit(7) };
                    }
                    drop(w);
                    let mut s = String::new();
                    r.read_to_string(&mut s).unwrap();
                    let mut status = 0;
                    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
                    assert!(libc::WIFEXITED(status), "status {status:#x}");
                    assert_eq!(libc::WEXITSTATUS(status), 7);
                    assert_eq!(s, format!("child {i} ok"));
                    assert_eq!(
                        std::fs::read_to_string(&path).unwrap(),
                        format!("hello {i}")
                    );
                })
            })
            .collect();
        join_all(hs);
        stop.store(true, Ordering::Relaxed);
        join_all(busy);
    });
}

/// A process-directed signal handled while coroutines run: ctrlc's
/// handler (a `write` to its pipe, in signal context) interrupting
/// coroutines that allocate and do pipe I/O. The signals are sent with
/// `pthread_kill` to the thread running a busy coroutine (what a
/// process-directed signal does when the main thread blocks it).
#[test]
fn ctrlc_signal_interrupts_busy_coroutines() {
    in_children("ctrlc_signal_interrupts_busy_coroutines", || {
        static HANDLED: AtomicU64 = AtomicU64::new(0);
        ctrlc::set_handler(|| {
            HANDLED.fetch_add(1, Ordering::SeqCst);
        })
        .unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let targets = Arc::new(Mutex::new(Vec::<libc::pthread_t>::new()));
        // As many workers as executors: fairness among more is tested
        // separately (`busy_workers_delay_others_little`).
        let workers: Vec<_> = (0..2)
            .map(|i| {
                let (stop, targets) = (stop.clone(), targets.clone());
                coroutines::spawn(move || {
                    let (mut a, mut b) = std::os::unix::net::UnixStream::pair().unwrap();
                    let mut n = 0u64;
                    let mut v: Vec<Box<[u8]>> = Vec::new();
                    let mut buf = [0u8; 64];
                    while !stop.load(Ordering::Relaxed) {
                        if n % 256 == 0 {
                            targets
                                .lock()
                                .unwrap()
                                .push(unsafe { libc::pthread_self() });
                        }
                        v.push(vec![i as u8; 1 + (n % 200) as usize].into_boxed_slice());
                        if v.len() > 64 {
                            v.clear();
                        }
                        a.write_all(&buf[..17]).unwrap();
                        b.read_exact(&mut buf[..17]).unwrap();
                        n += 1;
                    }
                    n
                })
            })
            .collect();
        for k in 1..=200u64 {
            let t = loop {
                let mut g = targets.lock().unwrap();
                if let Some(t) = g.pop() {
                    g.clear();
                    break t;
                }
                drop(g);
                std::thread::sleep(Duration::from_micros(100));
            };
            unsafe { libc::pthread_kill(t, libc::SIGINT) };
            let t0 = Instant::now();
            while HANDLED.load(Ordering::SeqCst) < k {
                assert!(
                    t0.elapsed() < Duration::from_secs(10),
                    "signal {k} not handled"
                );
                std::thread::sleep(Duration::from_micros(100));
            }
        }
        stop.store(true, Ordering::Relaxed);
        assert!(join_all(workers).iter().all(|&n| n > 0));
        assert_eq!(HANDLED.load(Ordering::SeqCst), 200);
    });
}

/// `std::process::exit` called from a coroutine (a CLI's worker failing
/// hard) while other coroutines are parked and busy: the process exits
/// with that code, promptly.
#[test]
fn process_exit_from_coroutine() {
    const VAR: &str = "COROUTINES_CRATES2_EXIT";
    if std::env::var_os(VAR).is_some() {
        let stop = Arc::new(AtomicBool::new(false));
        for _ in 0..2 {
            let stop = stop.clone();
            coroutines::spawn(move || while !stop.load(Ordering::Relaxed) {});
        }
        for _ in 0..100 {
            coroutines::spawn(|| std::thread::sleep(Duration::from_secs(600)));
        }
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        coroutines::spawn(move || {
            let _ = rx.recv();
        });
        coroutines::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            print!("exiting");
            drop(tx);
            std::process::exit(3);
        })
        .join()
        .unwrap();
        unreachable!();
    }
    for slice in ["2ms", "100us"] {
        let mut cmd = std::process::Command::new(std::env::current_exe().unwrap());
        cmd.args(["process_exit_from_coroutine", "--exact", "--nocapture"])
            .env(VAR, "1")
            .env("COROUTINES_WORKERS", "2")
            .env("COROUTINES_SLICE", slice);
        let t = Instant::now();
        let out = common::output_with_deadline(cmd, Duration::from_secs(60));
        let so = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(3), "{out:?}");
        assert!(so.contains("exiting"), "stdout not flushed: {so}");
        assert!(t.elapsed() < Duration::from_secs(20), "{:?}", t.elapsed());
    }
}

/// `std::backtrace::Backtrace::force_capture()` (the unwinder walking a
/// coroutine's stack, then symbolisation) in 48 coroutines under
/// preemption; every trace names the function that took it.
#[test]
fn backtrace_capture_in_coroutines() {
    in_children("backtrace_capture_in_coroutines", || {
        #[inline(never)]
        fn deep(n: u32) -> String {
            if n == 0 {
                std::backtrace::Backtrace::force_capture().to_string()
            } else {
                let s = deep(n - 1);
                std::hint::black_box(s)
            }
        }
        let hs: Vec<_> = (0..48u32)
            .map(|i| {
                coroutines::spawn(move || {
                    let mut ok = 0;
                    for k in 0..4 {
                        let s = deep(i % 8 + k);
                        if s.contains("deep") {
                            ok += 1;
                        }
                        coroutines::yield_now();
                    }
                    ok
                })
            })
            .collect();
        assert!(join_all(hs).iter().all(|&n| n == 4));
    });
}

/// `std::thread::scope` inside coroutines: OS threads borrowing the
/// coroutine's stack data, joined at the scope's end (the coroutine
/// parks), 16 coroutines at once.
#[test]
fn thread_scope_in_coroutines() {
    in_children("thread_scope_in_coroutines", || {
        let hs: Vec<_> = (0..16u64)
            .map(|i| {
                coroutines::spawn(move || {
                    let data: Vec<u64> = (0..10_000).map(|k| k * i).collect();
                    let total = AtomicU64::new(0);
                    std::thread::scope(|s| {
                        for part in data.chunks(2500) {
                            let total = &total;
                            s.spawn(move || {
                                std::thread::sleep(Duration::from_millis(2));
                                total.fetch_add(part.iter().sum::<u64>(), Ordering::SeqCst);
                            });
                        }
                    });
                    total.load(Ordering::SeqCst)
                })
            })
            .collect();
        for (i, t) in join_all(hs).into_iter().enumerate() {
            assert_eq!(t, (0..10_000u64).sum::<u64>() * i as u64);
        }
    });
}

/// One multi-threaded tokio runtime shared by 64 coroutines, each calling
/// `block_on` (the coroutine parks in tokio's thread parker) with timers,
/// spawned tasks and `spawn_blocking` inside.
#[test]
fn tokio_multi_thread_block_on_from_coroutines() {
    in_children("tokio_multi_thread_block_on_from_coroutines", || {
        let rt = Arc::new(
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap(),
        );
        let hs: Vec<_> = (0..64u64)
            .map(|i| {
                let rt = rt.clone();
                coroutines::spawn(move || {
                    let mut sum = 0;
                    for k in 0..10u64 {
                        sum += rt.block_on(async move {
                            tokio::time::sleep(Duration::from_millis(1)).await;
                            let a = tokio::spawn(async move { i * k }).await.unwrap();
                            let b = tokio::task::spawn_blocking(move || {
                                std::thread::sleep(Duration::from_micros(200));
                                a + 1
                            })
                            .await
                            .unwrap();
                            b
                        });
                    }
                    sum
                })
            })
            .collect();
        let total: u64 = join_all(hs).into_iter().sum();
        let want: u64 = (0..64u64)
            .flat_map(|i| (0..10u64).map(move |k| i * k + 1))
            .sum();
        assert_eq!(total, want);
        match Arc::try_unwrap(rt) {
            Ok(rt) => coroutines::spawn(move || rt.shutdown_timeout(Duration::from_secs(10)))
                .join()
                .unwrap(),
            Err(_) => panic!("runtime still shared"),
        }
    });
}

/// reqwest's blocking client timing out on a server that accepts but
/// never answers: 16 coroutines, each request fails with a timeout after
/// about 200 ms.
#[test]
fn reqwest_timeout_on_silent_server() {
    in_children("reqwest_timeout_on_silent_server", || {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        coroutines::spawn(move || {
            let mut keep = Vec::new();
            for s in l.incoming() {
                keep.push(s.unwrap());
            }
        });
        let c = reqwest::blocking::Client::builder()
            .timeout(Duration::from_millis(200))
            .build()
            .unwrap();
        let hs: Vec<_> = (0..16)
            .map(|_| {
                let c = c.clone();
                coroutines::spawn(move || {
                    let t = Instant::now();
                    let e = c.get(format!("http://{addr}/")).send().unwrap_err();
                    assert!(e.is_timeout(), "{e:?}");
                    t.elapsed()
                })
            })
            .collect();
        for e in join_all(hs) {
            assert!(e >= Duration::from_millis(200), "{e:?}");
            assert!(e < Duration::from_secs(10), "{e:?}");
        }
    });
}

/// Coroutines that spend most of their time in hooked calls that never
/// wait (a socket ping-pong within one coroutine, reads of a file in the
/// page cache): a preemption due in hook code is taken when the hook
/// returns. And allocation-bound ones (serde_json): about half of their
/// time is inside libc's malloc and free, where no preemption may land, so
/// a signal must find them between two libc calls; the executor's own
/// 20 µs retry timer (preempt/retry.rs) does that. Measured here: a
/// sleeper coroutine's lateness and how long a queued coroutine waits for
/// its first run, 4 such workers on 2 executors, one kind after the other
/// (in one test: run side by side, the children oversubscribe the CPUs).
/// OS threads: p99 lateness ~2–6 ms, every thread runs within ~10 ms.
/// Before the hook-exit safe point the hook-bound kinds were p99
/// 0.13-0.16 s late; before the retry timer the json kind 8-48 ms (with
/// monitor retries from 100 µs, doubling), now 0.4-7 ms.
#[test]
fn busy_workers_delay_others_little() {
    in_children("busy_workers_delay_others_little", || {
        busy_modes_meet_bounds(&["socket", "file", "json"])
    });
}

fn busy_modes_meet_bounds(modes: &[&'static str]) {
    for &mode in modes {
        // Up to 3 measurements per kind, the first within the bounds wins:
        // a probe's p99 over 200 sleeps also measures the machine, and in a
        // full suite run beside two busy processes the json kind once read
        // 33 ms (its other runs there: 7-15 ms; idle 0.4-7 ms; before the
        // retry timer 8-48 ms idle). A broken mechanism misses every time.
        let mut seen = Vec::new();
        let mut ok = false;
        for _ in 0..3 {
            let in_libc = |s: coroutines::Stats| s.preempt.quick_retries + s.preempt.return_hijacks;
            let before = in_libc(coroutines::stats());
            let (first, late) = busy_workers_and_probe(mode);
            eprintln!("{mode}: first runs {first:?}, probe p99/max {late:?}");
            if mode == "json" {
                // Allocation-bound workers are mostly found in libc: their
                // preemptions go through a hijacked return from libc or
                // the executors' retry timers.
                assert!(
                    in_libc(coroutines::stats()) > before,
                    "json: no hijacked return or quick retry"
                );
            }
            // First runs: typically 5-40 ms for the hook-bound modes, but
            // with two busy processes on the machine a queued coroutine once
            // waited 0.89 s for its first run in the file mode (idle: 235 ms
            // once in ~15 runs), hence the loose bound; before the hook-exit
            // safe points it was up to 3.8 s. The probe's lateness is the
            // tight check.
            ok = first.iter().all(|f| *f < Duration::from_millis(3000))
                && late.0 < Duration::from_millis(30)
                && late.1 < Duration::from_millis(100);
            seen.push((first, late));
            if ok {
                break;
            }
        }
        assert!(
            ok,
            "{mode}: no measurement within the bounds (first runs < 3 s, probe p99 < 30 ms, max < 100 ms): {seen:?}"
        );
    }
}

/// 4 workers of kind `mode` for the duration of 200 1-ms sleeps of a probe
/// coroutine; returns when each worker first ran (from the spawn) and the
/// probe's p99 and max lateness.
fn busy_workers_and_probe(mode: &'static str) -> (Vec<Duration>, (Duration, Duration)) {
    let stop = Arc::new(AtomicBool::new(false));
    let t0 = Instant::now();
    let ws: Vec<_> = (0..4)
        .map(|_| {
            let stop = stop.clone();
            coroutines::spawn(move || {
                let first = t0.elapsed();
                let (mut a, mut b) = std::os::unix::net::UnixStream::pair().unwrap();
                let mut f = std::fs::File::open(std::env::current_exe().unwrap()).unwrap();
                let mut buf = vec![0u8; 8192];
                let mut k = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    match mode {
                        "json" => {
                            let v = serde_json::json!({
                                "id": k,
                                "name": format!("item {k}"),
                                "tags": ["a", "b", format!("t{}", k % 7)],
                                "nested": {"x": k * 2, "y": [1, 2, 3]},
                            });
                            let s = serde_json::to_string(&v).unwrap();
                            let back: serde_json::Value = serde_json::from_str(&s).unwrap();
                            assert_eq!(back["id"], k);
                        }
                        "socket" => {
                            a.write_all(&buf[..17]).unwrap();
                            b.read_exact(&mut buf[..17]).unwrap();
                        }
                        _ => {
                            use std::io::Seek;
                            if f.read(&mut buf).unwrap() == 0 {
                                f.seek(std::io::SeekFrom::Start(0)).unwrap();
                            }
                            let h = buf.iter().fold(0u64, |h, &x| h.wrapping_mul(31) ^ x as u64);
                            std::hint::black_box(h);
                        }
                    }
                    k += 1;
                }
                first
            })
        })
        .collect();
    let probe = coroutines::spawn(|| {
        let mut late = Vec::new();
        for _ in 0..200 {
            let t = Instant::now();
            std::thread::sleep(Duration::from_millis(1));
            late.push(t.elapsed() - Duration::from_millis(1));
        }
        late.sort();
        (late[197], late[199])
    });
    let late = probe.join().unwrap();
    stop.store(true, Ordering::Relaxed);
    (join_all(ws), late)
}

/// A forked child of a coroutine that waits (a sleep) while the parent's
/// coroutines do socket I/O: the parent must not notice the child. Today
/// the child keeps running the runtime it copied: its executor polls the
/// parent's epoll instance (shared across fork) and takes the parent's
/// edge-triggered events, so the parent's coroutines never wake; the
/// child's own sleep never ends either (no monitor thread in the child).
#[test]
fn fork_child_does_not_disturb_parent_io() {
    in_children("fork_child_does_not_disturb_parent_io", || {
        let pingers: Vec<_> = (0..8)
            .map(|_| {
                coroutines::spawn(|| {
                    let (mut a, mut b) = std::os::unix::net::UnixStream::pair().unwrap();
                    let echo = coroutines::spawn(move || {
                        let mut buf = [0u8; 8];
                        while b.read_exact(&mut buf).is_ok() {
                            if b.write_all(&buf).is_err() {
                                break;
                            }
                        }
                    });
                    let mut buf = [0u8; 8];
                    let t0 = Instant::now();
                    let mut rounds = 0u32;
                    while t0.elapsed() < Duration::from_millis(600) {
                        a.write_all(&[1; 8]).unwrap();
                        a.read_exact(&mut buf).unwrap();
                        rounds += 1;
                        std::thread::sleep(Duration::from_micros(200));
                    }
                    drop(a);
                    echo.join().unwrap();
                    rounds
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(50));
        let status = coroutines::spawn(|| {
            let pid = unsafe { libc::fork() };
            if pid == 0 {
                // A stuck child must not outlive the test (it holds the
                // test's output pipes).
                unsafe { libc::alarm(10) };
                std::thread::sleep(Duration::from_millis(300));
                unsafe { libc::_exit(5) };
            }
            let mut st = 0;
            assert_eq!(unsafe { libc::waitpid(pid, &mut st, 0) }, pid);
            st
        })
        .join()
        .unwrap();
        assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 5);
        assert!(join_all(pingers).iter().all(|&r| r > 10));
    });
}
