//! A panicking coroutine's payload reaches `join`; the other coroutines
//! carry on and the runtime keeps serving.
//!
//! Run: `cargo run --release --example panic`

fn main() {
    let handles: Vec<_> = (0..6)
        .map(|i| {
            coroutines::Builder::new()
                .name(format!("worker-{i}"))
                .spawn(move || {
                    coroutines::yield_now();
                    if i == 3 {
                        panic!("worker {i} gives up");
                    }
                    i * 100
                })
                .expect("spawn")
        })
        .collect();
    for h in handles {
        let name = h.coroutine().name().unwrap_or("?").to_string();
        match h.join() {
            Ok(v) => println!("{name}: returned {v}"),
            Err(payload) => {
                let msg = payload
                    .downcast_ref::<String>()
                    .map(String::as_str)
                    .or_else(|| payload.downcast_ref::<&str>().copied())
                    .unwrap_or("<non-string payload>");
                println!("{name}: panicked with {msg:?}");
            }
        }
    }
    // Still serving after the panic.
    assert_eq!(
        coroutines::spawn(|| "still alive").join().unwrap(),
        "still alive"
    );
    println!(
        "runtime still serving: {} coroutines finished",
        coroutines::stats().finished
    );
}
