//! Bundled SQLite (rusqlite `bundled`: the C sources compiled into the
//! executable) from 32 coroutines × 50 transactions on one WAL database
//! with `busy_timeout`, on 2 executors. SQLite serialises its
//! shared-memory locks with pthread mutexes; before the pthread hooks an
//! executor blocked in `pthread_mutex_lock` while the holder — a sibling
//! preempted inside SQLite — was pinned to it, and the run hung.
//! Each transaction is a read-modify-write of a counter row and of one of
//! 8 balance rows; the totals must be exact.

#[path = "../../stress/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use rusqlite::{params, Connection, TransactionBehavior};

const COROUTINES: usize = 32;
const TXNS: usize = 50;

fn workload() {
    let dir = std::env::temp_dir().join(format!("coroutines-sqlite-{}", std::process::id()));
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
    let t = Instant::now();
    let hs: Vec<_> = (0..COROUTINES)
        .map(|k| {
            let path = path.clone();
            coroutines::spawn(move || {
                let mut c = Connection::open(&path).unwrap();
                c.busy_timeout(Duration::from_secs(60)).unwrap();
                for i in 0..TXNS {
                    let tx = c
                        .transaction_with_behavior(TransactionBehavior::Immediate)
                        .unwrap();
                    let n: i64 = tx
                        .query_row("SELECT n FROM counter WHERE id = 1", [], |r| r.get(0))
                        .unwrap();
                    tx.execute("UPDATE counter SET n = ?1 WHERE id = 1", params![n + 1])
                        .unwrap();
                    let (from, to) = ((k + i) % 8, (k + 3 * i + 1) % 8);
                    let b: i64 = tx
                        .query_row(
                            "SELECT balance FROM account WHERE id = ?1",
                            params![from],
                            |r| r.get(0),
                        )
                        .unwrap();
                    tx.execute(
                        "UPDATE account SET balance = ?1 WHERE id = ?2",
                        params![b - 7, from],
                    )
                    .unwrap();
                    tx.execute(
                        "UPDATE account SET balance = balance + 7 WHERE id = ?1",
                        params![to],
                    )
                    .unwrap();
                    tx.commit().unwrap();
                }
            })
        })
        .collect();
    for h in hs {
        h.join().unwrap();
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
    assert_eq!(n as usize, COROUTINES * TXNS);
    assert_eq!(total, 8000);
    eprintln!(
        "sqlite: {} transactions in {elapsed:?}; {:?}",
        n,
        coroutines::stats()
    );
    assert!(elapsed < Duration::from_secs(60), "{elapsed:?}");
}

#[test]
fn sqlite_wal_32_coroutines_default_slice() {
    common::in_child(
        "COROUTINES_SQLITE_CHILD",
        "sqlite_wal_32_coroutines_default_slice",
        &[("COROUTINES_WORKERS", "2")],
        Duration::from_secs(120),
        workload,
    );
}

#[test]
fn sqlite_wal_32_coroutines_100us_slice() {
    common::in_child(
        "COROUTINES_SQLITE_CHILD",
        "sqlite_wal_32_coroutines_100us_slice",
        &[("COROUTINES_WORKERS", "2"), ("COROUTINES_SLICE", "100us")],
        Duration::from_secs(120),
        workload,
    );
}
