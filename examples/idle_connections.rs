//! Memory per idle connection-serving coroutine: N connections, each served
//! by a coroutine blocked in `TcpStream::read` (std::net, a 64-byte
//! buffer); RSS from /proc/self/statm before and after, divided by N.
//! The client ends are held by the main thread (their memory is kernel
//! socket memory, not RSS).
//!
//! Run: `cargo run --release --example idle_connections [N]` (default 9000:
//! both ends of every connection live in this process, and the hard
//! RLIMIT_NOFILE here is 20,000).

use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("read /proc/self/statm");
    statm
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse::<u64>().ok())
        .expect("statm format")
        * 4096
}

fn main() {
    let n: usize = match std::env::args().nth(1) {
        Some(a) => a.parse().unwrap_or_else(|_| {
            eprintln!("usage: idle_connections [N]   (N must be a whole number, got {a:?})");
            std::process::exit(2)
        }),
        None => 9000,
    };
    // Raise the soft fd limit to the hard one (both ends of n connections).
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit on this process with a valid struct.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        lim.rlim_cur = lim.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
    }
    if (lim.rlim_cur as usize) < 2 * n + 64 {
        eprintln!(
            "idle_connections: need {} fds, RLIMIT_NOFILE allows {}; pass a smaller N",
            2 * n + 64,
            lim.rlim_cur
        );
        std::process::exit(2);
    }
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let parked = Arc::new(AtomicUsize::new(0));
    // Warm the runtime and the reactor up before the baseline.
    coroutines::spawn(|| std::thread::sleep(Duration::from_millis(1)))
        .join()
        .unwrap();
    let base = rss_bytes();
    let p = parked.clone();
    drop(coroutines::spawn(move || {
        for s in listener.incoming().take(n) {
            let mut s = s.unwrap();
            let p = p.clone();
            drop(coroutines::spawn(move || {
                let mut buf = [0u8; 64];
                p.fetch_add(1, Ordering::SeqCst);
                // Blocks (parks) until the client closes.
                while s.read(&mut buf).map(|k| k > 0).unwrap_or(false) {}
            }));
        }
    }));
    let clients: Vec<TcpStream> = (0..n).map(|_| TcpStream::connect(addr).unwrap()).collect();
    while parked.load(Ordering::SeqCst) < n {
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(200));
    let rss = rss_bytes().saturating_sub(base);
    let s = coroutines::stats();
    println!(
        "{n} idle connections: RSS +{:.1} MiB = {} bytes per connection-serving coroutine (io_waiting {})",
        rss as f64 / (1 << 20) as f64,
        rss / n as u64,
        s.io_waiting
    );
    drop(clients);
}
