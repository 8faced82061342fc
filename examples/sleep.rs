//! 10,000 coroutines each sleep with plain `std::thread::sleep`: the hook
//! parks them on the runtime's timers, so this takes about one second on a
//! few OS threads.
use std::time::{Duration, Instant};

fn main() {
    let t = Instant::now();
    let hs: Vec<_> = (0..10_000)
        .map(|i| {
            coroutines::spawn(move || {
                std::thread::sleep(Duration::from_millis(1000));
                i
            })
        })
        .collect();
    let sum: u64 = hs.into_iter().map(|h| h.join().unwrap()).sum();
    println!("10000 sleeps of 1 s took {:?} (sum {sum})", t.elapsed());
}
