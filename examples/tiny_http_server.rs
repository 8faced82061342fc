//! A tiny_http 0.12 server whose requests are answered by one coroutine
//! each (`coroutine`, the default) or one OS thread each (`thread`), for
//! comparing under `wrk` (BENCHMARKS.md, "tiny_http"). tiny_http itself
//! reads every connection on its own OS thread, so each socket is shared
//! by a plain thread (reading requests) and a responder (writing answers).
//!
//! ```text
//! cargo run --release --example tiny_http_server -- coroutine 127.0.0.1:8099 12
//! wrk -t2 -c64 -d5s http://127.0.0.1:8099/
//! ```
//! Arguments: mode, address, seconds to serve before exiting (default 30).

use std::time::{Duration, Instant};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let mode = args.get(1).map_or("coroutine", String::as_str).to_string();
    let addr = args.get(2).map_or("127.0.0.1:8099", String::as_str);
    let secs: u64 = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(30);
    let server = tiny_http::Server::http(addr).expect("bind");
    eprintln!("tiny_http_server: {mode} responders on {addr} for {secs} s");
    let end = Instant::now() + Duration::from_secs(secs);
    let mut served = 0u64;
    while Instant::now() < end {
        let req = match server.recv_timeout(Duration::from_millis(100)) {
            Ok(Some(r)) => r,
            Ok(None) => continue,
            Err(e) => {
                eprintln!("recv: {e}");
                break;
            }
        };
        served += 1;
        let respond = move || {
            let body = format!("hello from {}\n", req.url());
            let _ = req.respond(tiny_http::Response::from_string(body));
        };
        if mode == "thread" {
            std::thread::spawn(respond);
        } else {
            coroutines::spawn(respond);
        }
    }
    eprintln!("tiny_http_server: {served} requests");
}
