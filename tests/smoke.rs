use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[test]
fn spawn_join_values() {
    let hs: Vec<_> = (0..100u64)
        .map(|i| coroutines::spawn(move || i * i))
        .collect();
    let sum: u64 = hs.into_iter().map(|h| h.join().unwrap()).sum();
    assert_eq!(sum, (0..100u64).map(|i| i * i).sum());
}

#[test]
fn yields_and_nested() {
    let n = Arc::new(AtomicUsize::new(0));
    let n2 = n.clone();
    coroutines::run(move || {
        let hs: Vec<_> = (0..50)
            .map(|_| {
                let n = n2.clone();
                coroutines::spawn(move || {
                    for _ in 0..100 {
                        coroutines::yield_now();
                    }
                    n.fetch_add(1, Ordering::Relaxed);
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
    });
    assert_eq!(n.load(Ordering::Relaxed), 50);
}

#[test]
fn sleep_and_park() {
    let t = Instant::now();
    let hs: Vec<_> = (0..100)
        .map(|_| coroutines::spawn(|| coroutines::sleep(Duration::from_millis(50))))
        .collect();
    for h in hs {
        h.join().unwrap();
    }
    assert!(t.elapsed() >= Duration::from_millis(50));
    let h = coroutines::spawn(|| {
        coroutines::park();
        7
    });
    std::thread::sleep(Duration::from_millis(10));
    h.coroutine().unpark();
    assert_eq!(h.join().unwrap(), 7);
}

/// Sleepers that start together are spread, so that pollers of one
/// resource (SQLite's busy handler) do not stay in lockstep: 16 coroutines
/// sleeping 100 ms from the same instant wake over more than 1 ms (each
/// at least 100 ms after its start). Without the spreading they all woke
/// within about 0.1 ms, fired by one executor's timer batch.
#[test]
fn sleepers_in_a_herd_wake_spread_out() {
    let before = coroutines::stats().sleeps_spread;
    let t = Instant::now();
    let hs: Vec<_> = (0..16)
        .map(|_| {
            coroutines::spawn(move || {
                let start = t.elapsed();
                coroutines::sleep(Duration::from_millis(100));
                (start, t.elapsed())
            })
        })
        .collect();
    let times: Vec<_> = hs.into_iter().map(|h| h.join().unwrap()).collect();
    for (start, woke) in &times {
        assert!(
            *woke >= *start + Duration::from_millis(100),
            "{start:?} -> {woke:?}"
        );
    }
    let first = times.iter().map(|t| t.1).min().unwrap();
    let last = times.iter().map(|t| t.1).max().unwrap();
    assert!(
        last - first >= Duration::from_millis(1),
        "16 sleepers armed together woke within {:?} of each other",
        last - first
    );
    assert!(coroutines::stats().sleeps_spread - before >= 8);
}

#[test]
fn panic_payload() {
    let h = coroutines::spawn(|| -> u32 { panic!("boom {}", std::hint::black_box(5)) });
    let e = h.join().unwrap_err();
    assert_eq!(
        e.downcast_ref::<String>().map(|s| s.as_str()),
        Some("boom 5")
    );
}
