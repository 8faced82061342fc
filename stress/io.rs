//! I/O stress: many concurrent connections, many sleepers, and a
//! third-party blocking HTTP client, all through the libc hooks. Tests that
//! need 2 executors (or more fds than one process may open) run child
//! processes of this binary (`IO_STRESS_ROLE` selects the role).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn role() -> Option<String> {
    std::env::var("IO_STRESS_ROLE").ok()
}

fn child(test: &str, role: &str, extra: &[(&str, String)]) -> Command {
    let mut c = Command::new(std::env::current_exe().unwrap());
    c.args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env("IO_STRESS_ROLE", role)
        .env("COROUTINES_WORKERS", "2");
    for (k, v) in extra {
        c.env(k, v);
    }
    c
}

/// Raises RLIMIT_NOFILE's soft limit to the hard one; returns the limit.
fn raise_nofile() -> u64 {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: valid rlimit pointers.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut r);
        r.rlim_cur = r.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &r);
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut r);
    }
    r.rlim_cur
}

fn os_threads() -> usize {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Threads:"))
                .map(|l| l[8..].trim().parse().unwrap_or(0))
        })
        .unwrap_or(0)
}

fn rss_kib() -> usize {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .map(|l| l[6..].trim().trim_end_matches(" kB").parse().unwrap_or(0))
        })
        .unwrap_or(0)
}

const MSG: usize = 4096;
const ROUNDS: usize = 2;

fn pattern(i: usize, n: usize) -> Vec<u8> {
    (0..n).map(|k| ((k * 31 + i * 7) % 251) as u8).collect()
}

/// 10,000 concurrent connections (fewer if RLIMIT_NOFILE's hard limit is
/// too low; printed): a server process and a client process, each on 2
/// executors, everything in coroutines with std::net. Every byte checked.
#[test]
fn echo_10k_connections() {
    match role().as_deref() {
        Some("server") => return echo_server_role(),
        Some("client") => return echo_client_role(),
        _ => {}
    }
    let limit = raise_nofile();
    let want: usize = std::env::var("IO_STRESS_WANT").map_or(10_000, |v| v.parse().unwrap());
    let conns = want.min((limit as usize).saturating_sub(64));
    if conns < want {
        println!("RLIMIT_NOFILE hard limit {limit}: scaling 10,000 connections down to {conns}");
    }
    let t = Instant::now();
    let mut srv = child(
        "echo_10k_connections",
        "server",
        &[("IO_STRESS_CONNS", conns.to_string())],
    )
    .stdout(Stdio::piped())
    .spawn()
    .unwrap();
    let mut out = BufReader::new(srv.stdout.take().unwrap());
    let mut port = None;
    let mut line = String::new();
    while out.read_line(&mut line).unwrap() > 0 {
        // The harness prints "test name ... " without a newline first.
        if let Some(p) = line.split("PORT ").nth(1) {
            port = Some(p.trim().to_string());
            break;
        }
        line.clear();
    }
    let port = port.expect("server child printed no port");
    let cli = child(
        "echo_10k_connections",
        "client",
        &[
            ("IO_STRESS_CONNS", conns.to_string()),
            ("IO_STRESS_PORT", port),
        ],
    )
    .output()
    .unwrap();
    print!("{}", String::from_utf8_lossy(&cli.stdout));
    eprint!("{}", String::from_utf8_lossy(&cli.stderr));
    let mut rest = String::new();
    out.read_to_string(&mut rest).unwrap();
    let st = srv.wait().unwrap();
    print!("{rest}");
    assert!(cli.status.success(), "client failed");
    assert!(st.success(), "server failed");
    assert!(rest.contains("SERVER OK"));
    println!(
        "echo {conns} connections x {ROUNDS} x {MSG} B: {:?}",
        t.elapsed()
    );
    assert!(t.elapsed() < Duration::from_secs(60));
}

fn echo_server_role() {
    raise_nofile();
    let conns: usize = std::env::var("IO_STRESS_CONNS").unwrap().parse().unwrap();
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    println!("PORT {}", l.local_addr().unwrap().port());
    std::io::stdout().flush().unwrap();
    let rss0 = rss_kib();
    let peak_threads = coroutines::run(move || {
        let mut hs = Vec::with_capacity(conns);
        let mut threads = 0;
        for i in 0..conns {
            let (mut s, _) = l.accept().unwrap();
            hs.push(coroutines::spawn(move || {
                let mut buf = [0u8; 1024];
                let mut total = 0;
                loop {
                    match s.read(&mut buf) {
                        Ok(0) => break,
                        Ok(n) => {
                            s.write_all(&buf[..n]).unwrap();
                            total += n;
                        }
                        Err(e) => panic!("server read: {e}"),
                    }
                }
                total
            }));
            if i + 1 == conns {
                threads = os_threads();
            }
        }
        let mut bytes = 0;
        for h in hs {
            bytes += h.join().unwrap();
        }
        assert_eq!(bytes, conns * MSG * ROUNDS);
        threads
    });
    let s = coroutines::stats();
    println!(
        "server: {conns} connections, OS threads {peak_threads}, RSS +{} KiB, io_parks {}, polls {}, events {}",
        rss_kib().saturating_sub(rss0),
        s.io_parks,
        s.reactor_polls,
        s.reactor_events
    );
    println!("SERVER OK");
}

fn echo_client_role() {
    raise_nofile();
    let conns: usize = std::env::var("IO_STRESS_CONNS").unwrap().parse().unwrap();
    let port: u16 = std::env::var("IO_STRESS_PORT").unwrap().parse().unwrap();
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let rss0 = rss_kib();
    let (threads, rss_all) = coroutines::run(move || {
        let connecting = Arc::new(AtomicUsize::new(0));
        let connected = Arc::new(AtomicUsize::new(0));
        let waiters: Arc<Mutex<Vec<coroutines::Coroutine>>> = Arc::new(Mutex::new(Vec::new()));
        let go = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut hs = Vec::with_capacity(conns);
        for i in 0..conns {
            // Keep the listen backlog from overflowing (SYN retries cost 1 s).
            while connecting.load(Ordering::Relaxed) >= 128 {
                std::thread::sleep(Duration::from_micros(200));
            }
            connecting.fetch_add(1, Ordering::Relaxed);
            let (connecting, connected, waiters, go) = (
                connecting.clone(),
                connected.clone(),
                waiters.clone(),
                go.clone(),
            );
            hs.push(coroutines::spawn(move || {
                let mut s = TcpStream::connect(addr).unwrap();
                connecting.fetch_sub(1, Ordering::Relaxed);
                // Wait until every connection is open: they are concurrent.
                {
                    let mut w = waiters.lock().unwrap();
                    if connected.fetch_add(1, Ordering::AcqRel) + 1 == conns {
                        go.store(true, Ordering::Release);
                        for c in w.drain(..) {
                            c.unpark();
                        }
                    } else {
                        w.push(coroutines::current());
                    }
                }
                while !go.load(Ordering::Acquire) {
                    coroutines::park();
                }
                let data = pattern(i, MSG);
                let mut got = vec![0u8; MSG];
                for _ in 0..ROUNDS {
                    s.write_all(&data).unwrap();
                    s.read_exact(&mut got).unwrap();
                    assert!(got == data, "connection {i}: echoed bytes differ");
                }
                s.shutdown(std::net::Shutdown::Write).unwrap();
                assert_eq!(s.read(&mut got).unwrap(), 0);
            }));
        }
        while !go.load(Ordering::Acquire) {
            std::thread::sleep(Duration::from_millis(5));
        }
        let threads = os_threads();
        let rss = rss_kib();
        for h in hs {
            h.join().unwrap();
        }
        (threads, rss)
    });
    println!(
        "client: {conns} concurrent connections, OS threads {threads}, RSS with all open +{} KiB (~{} B per connection-coroutine incl. socket buffers' user side)",
        rss_all.saturating_sub(rss0),
        rss_all.saturating_sub(rss0) * 1024 / conns.max(1)
    );
}

/// 100,000 coroutines sleeping concurrently with std::thread::sleep finish
/// in about the sleep time.
#[test]
fn sleep_100k_coroutines() {
    let n = 100_000;
    let done = Arc::new(AtomicUsize::new(0));
    let t = Instant::now();
    let hs: Vec<_> = (0..n)
        .map(|_| {
            let done = done.clone();
            coroutines::Builder::new()
                .stack_size(16 * 1024)
                .spawn(move || {
                    std::thread::sleep(Duration::from_millis(500));
                    done.fetch_add(1, Ordering::Relaxed);
                })
                .unwrap()
        })
        .collect();
    let spawned = t.elapsed();
    for h in hs {
        h.join().unwrap();
    }
    let el = t.elapsed();
    println!("100k sleepers of 500 ms: spawned in {spawned:?}, all done in {el:?}");
    assert_eq!(done.load(Ordering::Relaxed), n);
    assert!(
        el >= Duration::from_millis(500) && el < Duration::from_secs(10),
        "{el:?}"
    );
}

/// A third-party blocking HTTP client (minreq, unmodified) used from 300
/// coroutines on 2 executors against a std::net HTTP server in coroutines.
#[test]
fn blocking_http_client_crate() {
    if role().as_deref() != Some("http") {
        let out = child("blocking_http_client_crate", "http", &[])
            .output()
            .unwrap();
        print!("{}", String::from_utf8_lossy(&out.stdout));
        eprint!("{}", String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success());
        assert!(String::from_utf8_lossy(&out.stdout).contains("HTTP OK"));
        return;
    }
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    coroutines::spawn(move || loop {
        let Ok((s, _)) = l.accept() else { return };
        coroutines::spawn(move || serve_http(s));
    });
    let clients: usize = std::env::var("IO_STRESS_CLIENTS").map_or(300, |v| v.parse().unwrap());
    let per = 5;
    let t = Instant::now();
    let ok = coroutines::run(move || {
        let hs: Vec<_> = (0..clients)
            .map(|i| {
                coroutines::spawn(move || {
                    let mut ok = 0;
                    for j in 0..per {
                        let r = minreq::get(format!("http://127.0.0.1:{port}/item/{i}/{j}"))
                            .send()
                            .unwrap();
                        assert_eq!(r.status_code, 200);
                        assert_eq!(r.as_str().unwrap(), format!("you asked for /item/{i}/{j}"));
                        ok += 1;
                    }
                    ok
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).sum::<usize>()
    });
    assert_eq!(ok, clients * per);
    println!(
        "minreq: {} requests from {clients} coroutines in {:?}, OS threads {}, workers {}",
        ok,
        t.elapsed(),
        os_threads(),
        coroutines::stats().workers
    );
    println!("HTTP OK");
}

fn serve_http(s: TcpStream) {
    let mut r = BufReader::new(s.try_clone().unwrap());
    let mut w = s;
    loop {
        let mut first = String::new();
        if r.read_line(&mut first).unwrap_or(0) == 0 {
            return;
        }
        let path = first.split_whitespace().nth(1).unwrap_or("/").to_string();
        let mut close = false;
        loop {
            let mut h = String::new();
            if r.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            if h.to_ascii_lowercase().starts_with("connection: close") {
                close = true;
            }
            if h == "\r\n" {
                break;
            }
        }
        let body = format!("you asked for {path}");
        let resp = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nContent-Type: text/plain\r\n\r\n{body}",
            body.len()
        );
        if w.write_all(resp.as_bytes()).is_err() || close {
            return;
        }
    }
}
