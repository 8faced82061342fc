//! Hello-world TCP server: `cargo run --release --example tcp_listener
//! [addr] [seconds]` (default 127.0.0.1:8080, runs until killed; with a
//! duration it exits on its own). The listener is bound on the main thread
//! and accepted inside a coroutine.
use std::io::Write;
use std::net::TcpListener;
use std::time::Duration;

fn main() {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8080".into());
    let secs: Option<u64> = std::env::args().nth(2).map(|s| s.parse().expect("seconds"));
    let listener = TcpListener::bind(&addr).unwrap();
    println!("listening on {}", listener.local_addr().unwrap());
    coroutines::spawn(move || {
        for s in listener.incoming() {
            let Ok(mut s) = s else { continue };
            coroutines::spawn(move || {
                let _ = s.write_all(b"hello world\n");
            });
        }
    });
    match secs {
        Some(n) => std::thread::sleep(Duration::from_secs(n)),
        None => loop {
            std::thread::sleep(Duration::from_secs(3600));
        },
    }
}
