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

#[test]
fn panic_payload() {
    let h = coroutines::spawn(|| -> u32 { panic!("boom {}", std::hint::black_box(5)) });
    let e = h.join().unwrap_err();
    assert_eq!(
        e.downcast_ref::<String>().map(|s| s.as_str()),
        Some("boom 5")
    );
}
