//! Echo server with std::net in coroutines: `cargo run --release --example
//! echo_server [addr] [seconds]` (default 127.0.0.1:8000).
use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::Duration;

fn main() {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8000".into());
    let secs: Option<u64> = std::env::args().nth(2).map(|s| s.parse().expect("seconds"));
    let listener = TcpListener::bind(&addr).unwrap();
    println!("echo server on {}", listener.local_addr().unwrap());
    coroutines::spawn(move || {
        for s in listener.incoming() {
            let Ok(mut s) = s else { continue };
            coroutines::spawn(move || {
                let mut buf = [0u8; 4096];
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
    match secs {
        Some(n) => std::thread::sleep(Duration::from_secs(n)),
        None => loop {
            std::thread::sleep(Duration::from_secs(3600));
        },
    }
}
