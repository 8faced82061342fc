//! The seed crate's first example, unchanged in spirit: coroutines spawned
//! from `main` call the *blocking* `std::thread::sleep`, and yet they all
//! sleep at the same time on a couple of executor threads.
//!
//! Run: `cargo run --release --example hello`

use std::time::{Duration, Instant};

fn sleep_thread(i: usize) {
    println!("sleep_thread {i} enter");
    std::thread::sleep(Duration::from_millis(500));
    println!("sleep_thread {i} exit");
}

fn main() {
    let start = Instant::now();
    let handles: Vec<_> = (0..5)
        .map(|i| coroutines::spawn(move || sleep_thread(i)))
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let s = coroutines::stats();
    println!(
        "main exit: 5 coroutines each slept 500 ms in {:.0} ms on {} executor threads",
        start.elapsed().as_secs_f64() * 1e3,
        s.workers
    );
}
