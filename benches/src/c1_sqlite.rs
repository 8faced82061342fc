//! C1: C code with pthread locks inside coroutines — bundled SQLite
//! (rusqlite `bundled`: the C sources compiled into this executable).
//!
//! 32 tasks × 50 transactions on one WAL database (`synchronous=NORMAL`,
//! `busy_timeout` 60 s), each `BEGIN IMMEDIATE`, a read-modify-write of a
//! counter row and a transfer between two of 8 balance rows, `COMMIT`.
//! coroutines: 32 `coroutines::spawn` tasks on 2 executors (spawned from
//! the main thread); threads: 32 OS threads. SQLite serialises its WAL
//! index with pthread mutexes and retries busy locks by sleeping
//! (`usleep`), both hooked for coroutines. Figure: ms from the first
//! spawn until all are joined (and transactions per second). The counter
//! and the balance total are checked; a wrong total panics the child.

use std::time::{Duration, Instant};

use rusqlite::{params, Connection, TransactionBehavior};

use crate::{report, sync, Params, Runtime, Workload};

const TASKS: usize = 32;
const TXNS: u64 = 50;

pub fn run(rt: Runtime, p: &Params) {
    sync::watchdog(Workload::C1, rt);
    let txns = p.count(TXNS) as usize;
    let dir = std::env::temp_dir().join(format!("coroutines-bench-c1-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("db.sqlite");
    {
        let c = Connection::open(&path).unwrap();
        c.pragma_update(None, "journal_mode", "WAL").unwrap();
        c.execute_batch(
            "CREATE TABLE counter(id INTEGER PRIMARY KEY, n INTEGER NOT NULL);
             CREATE TABLE account(id INTEGER PRIMARY KEY, balance INTEGER NOT NULL);
             INSERT INTO counter VALUES (1, 0);",
        )
        .unwrap();
        for i in 0..8 {
            c.execute("INSERT INTO account VALUES (?1, 1000)", params![i])
                .unwrap();
        }
    }
    let task = |k: usize, path: std::path::PathBuf| {
        move || {
            let mut c = Connection::open(&path).unwrap();
            c.busy_timeout(Duration::from_secs(60)).unwrap();
            c.pragma_update(None, "synchronous", "NORMAL").unwrap();
            for i in 0..txns {
                let tx = c
                    .transaction_with_behavior(TransactionBehavior::Immediate)
                    .unwrap();
                let n: i64 = tx
                    .query_row("SELECT n FROM counter WHERE id = 1", [], |r| r.get(0))
                    .unwrap();
                tx.execute("UPDATE counter SET n = ?1 WHERE id = 1", params![n + 1])
                    .unwrap();
                let (from, to) = ((k + i) % 8, (k + 3 * i + 1) % 8);
                tx.execute(
                    "UPDATE account SET balance = balance - 7 WHERE id = ?1",
                    params![from],
                )
                .unwrap();
                tx.execute(
                    "UPDATE account SET balance = balance + 7 WHERE id = ?1",
                    params![to],
                )
                .unwrap();
                tx.commit().unwrap();
            }
        }
    };
    let t = Instant::now();
    match rt {
        Runtime::Coroutines => {
            let hs: Vec<_> = (0..TASKS)
                .map(|k| coroutines::spawn(task(k, path.clone())))
                .collect();
            hs.into_iter().for_each(|h| h.join().unwrap());
        }
        Runtime::Threads => {
            let hs: Vec<_> = (0..TASKS)
                .map(|k| std::thread::spawn(task(k, path.clone())))
                .collect();
            hs.into_iter().for_each(|h| h.join().unwrap());
        }
        _ => unreachable!("C1 runs coroutines and threads only"),
    }
    let elapsed = t.elapsed();
    let c = Connection::open(&path).unwrap();
    let n: i64 = c
        .query_row("SELECT n FROM counter WHERE id = 1", [], |r| r.get(0))
        .unwrap();
    let total: i64 = c
        .query_row("SELECT SUM(balance) FROM account", [], |r| r.get(0))
        .unwrap();
    drop(c);
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(n as usize, TASKS * txns, "lost transactions");
    assert_eq!(total, 8000, "balances do not add up");
    let ms = elapsed.as_secs_f64() * 1e3;
    report::emit("C1", rt.name(), "ms", ms);
    report::emit(
        "C1",
        rt.name(),
        "tx_per_s",
        n as f64 / elapsed.as_secs_f64(),
    );
    if rt == Runtime::Coroutines {
        let s = coroutines::stats();
        report::emit("C1", rt.name(), "extra_executors", s.extra_started as f64);
    }
}
