//! Minimal HTTP/1.1 server (keep-alive) with std::net in coroutines, for
//! load generators such as `wrk -t2 -c100 -d10s http://127.0.0.1:8081/`.
//! `cargo run --release --example http_server [addr] [seconds]`; with a
//! duration it exits on its own (smoke tests).
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

fn serve(s: TcpStream) {
    let Ok(w) = s.try_clone() else { return };
    let mut w = w;
    let mut r = BufReader::new(s);
    let mut line = String::new();
    loop {
        // Request line, then headers up to the empty line.
        line.clear();
        if r.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut keep_alive = line.contains("HTTP/1.1");
        loop {
            line.clear();
            if r.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            let l = line.to_ascii_lowercase();
            if l.starts_with("connection:") {
                keep_alive = l.contains("keep-alive");
            }
            if line == "\r\n" || line == "\n" {
                break;
            }
        }
        let body = "Hello, World!";
        let resp = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: {}\r\n\r\n{body}",
            body.len(),
            if keep_alive { "keep-alive" } else { "close" }
        );
        if w.write_all(resp.as_bytes()).is_err() || !keep_alive {
            return;
        }
    }
}

fn main() {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8081".into());
    let secs: Option<u64> = std::env::args().nth(2).map(|s| s.parse().expect("seconds"));
    let listener = TcpListener::bind(&addr).unwrap();
    println!("http server on http://{}/", listener.local_addr().unwrap());
    coroutines::spawn(move || {
        for s in listener.incoming() {
            let Ok(s) = s else { continue };
            coroutines::spawn(move || serve(s));
        }
    });
    match secs {
        Some(n) => std::thread::sleep(Duration::from_secs(n)),
        None => loop {
            std::thread::sleep(Duration::from_secs(3600));
        },
    }
    println!("{:?}", coroutines::stats());
}
