//! W3 echo, the "corona" benchmark: a plain-thread client with std blocking
//! sockets opens 128 connections to an echo server on 127.0.0.1, then 5
//! times writes 64 bytes on every connection and reads the 64 bytes back on
//! every connection, verifying them. One iteration = the whole client run
//! (connect, 5 rounds, close). 10 warm-up + 50 timed iterations (`--scale`
//! scales these two counts only; connections, rounds and message size stay
//! fixed). Figures: `ms_median`, `ms_p90` per iteration, `completed` (1/0).
//!
//! The server runs in the same child process, started once and serving every
//! iteration; one task per connection, echoing until EOF:
//!
//! * coroutines: plain `std::net::TcpListener`/`TcpStream` and
//!   `std::io::{Read, Write}` inside `coroutines::spawn` (an accept-loop
//!   coroutine, one coroutine per connection). The crate's libc hooks are
//!   what make these calls park the coroutine rather than block its
//!   executor thread; without them 2 executors stall on the first 2 blocking
//!   calls, the client's reads time out and the child reports `completed=0`;
//! * may: `may::net::TcpListener`, a coroutine per connection (`go!`);
//! * tokio: `tokio::net::TcpListener`, a task per connection,
//!   `AsyncReadExt`/`AsyncWriteExt`, multi-thread runtime with 2 workers;
//! * threads: `std::net`, one OS thread per connection.
//!
//! The client runs on the child's main thread (a plain OS thread, never
//! inside a runtime). Every socket default is kept (Nagle on: each side has
//! nothing unacknowledged in flight when it writes, so it never delays). The
//! client's connects, reads and writes time out after 5 s, so a stalled
//! server ends the child with `completed=0` and a note rather than a hang.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use crate::{report, runtimes, Params, Runtime, WORKERS};

const CONNECTIONS: usize = 128;
const ROUNDS: usize = 5;
const MSG: usize = 64;
const WARMUP: u64 = 10;
const TIMED: u64 = 50;
/// Client-side timeout on every connect, read and write.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(5);
const ID: &str = "W3";

pub fn run(rt: Runtime, p: &Params) {
    let addr = match start_server(rt) {
        Ok(addr) => addr,
        Err(e) => {
            report::note(&format!("could not start the server: {e}"));
            report::emit(ID, rt.name(), "completed", 0.0);
            return;
        }
    };
    let warmup = p.count(WARMUP);
    let timed = p.count(TIMED);
    let mut ms = Vec::with_capacity(timed as usize);
    for i in 0..warmup + timed {
        let t0 = Instant::now();
        if let Err(e) = client(addr, i) {
            report::note(&format!(
                "iteration {} of {} ({} warm-up) failed after {:.0} ms: {e}",
                i + 1,
                warmup + timed,
                warmup,
                t0.elapsed().as_secs_f64() * 1e3
            ));
            if !ms.is_empty() {
                report::note(&format!("{} timed iterations had completed", ms.len()));
            }
            report::emit(ID, rt.name(), "completed", 0.0);
            return;
        }
        let elapsed = t0.elapsed();
        if i >= warmup {
            ms.push(elapsed.as_secs_f64() * 1e3);
        }
        report::progress(i + 1);
    }
    ms.sort_by(f64::total_cmp);
    report::emit(ID, rt.name(), "ms_median", report::median(&ms));
    report::emit(ID, rt.name(), "ms_p90", report::percentile(&ms, 0.90));
    report::emit(ID, rt.name(), "completed", 1.0);
}

/// The byte the client sends at `pos` of the message of (`iter`, `conn`,
/// `round`), so a reply crossed between connections or rounds is caught.
fn payload(iter: u64, conn: usize, round: usize) -> [u8; MSG] {
    let mut m = [0u8; MSG];
    for (pos, b) in m.iter_mut().enumerate() {
        *b = (iter as usize)
            .wrapping_mul(31)
            .wrapping_add(conn.wrapping_mul(7))
            .wrapping_add(round.wrapping_mul(13))
            .wrapping_add(pos) as u8;
    }
    m
}

/// One iteration: connect 128, 5 rounds (write all, then read all), close.
fn client(addr: SocketAddr, iter: u64) -> Result<(), String> {
    let mut conns = Vec::with_capacity(CONNECTIONS);
    for c in 0..CONNECTIONS {
        let s = TcpStream::connect_timeout(&addr, CLIENT_TIMEOUT)
            .and_then(|s| {
                s.set_read_timeout(Some(CLIENT_TIMEOUT))?;
                s.set_write_timeout(Some(CLIENT_TIMEOUT))?;
                Ok(s)
            })
            .map_err(|e| format!("connect #{c}: {}", describe(&e)))?;
        conns.push(s);
    }
    let mut buf = [0u8; MSG];
    for round in 0..ROUNDS {
        for (c, s) in conns.iter_mut().enumerate() {
            s.write_all(&payload(iter, c, round)).map_err(|e| {
                format!("round {round}: write on connection #{c}: {}", describe(&e))
            })?;
        }
        for (c, s) in conns.iter_mut().enumerate() {
            s.read_exact(&mut buf).map_err(|e| {
                format!(
                    "round {round}: read on connection #{c} ({c} of {CONNECTIONS} read this round): {}",
                    describe(&e)
                )
            })?;
            if buf != payload(iter, c, round) {
                return Err(format!("round {round}: connection #{c} echoed wrong bytes"));
            }
        }
    }
    Ok(())
}

fn describe(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {
            format!(
                "no progress within {} s (server stalled?)",
                CLIENT_TIMEOUT.as_secs()
            )
        }
        _ => e.to_string(),
    }
}

/// Binds 127.0.0.1:0, starts the accept loop in the runtime, returns the
/// bound address. The server lives until the child exits.
fn start_server(rt: Runtime) -> io::Result<SocketAddr> {
    match rt {
        Runtime::Coroutines => {
            let listener = TcpListener::bind("127.0.0.1:0")?;
            let addr = listener.local_addr()?;
            // Detached: the handle is dropped, the accept loop never ends.
            drop(coroutines::spawn(move || {
                std_accept_loop(listener, |s| {
                    drop(coroutines::spawn(move || echo(s)));
                })
            }));
            Ok(addr)
        }
        Runtime::Threads => {
            let listener = TcpListener::bind("127.0.0.1:0")?;
            let addr = listener.local_addr()?;
            std::thread::spawn(move || {
                std_accept_loop(listener, |s| {
                    std::thread::spawn(move || echo(s));
                })
            });
            Ok(addr)
        }
        Runtime::May => {
            runtimes::may_workers(WORKERS);
            let listener = may::net::TcpListener::bind("127.0.0.1:0")?;
            let addr = listener.local_addr()?;
            may::go!(move || {
                for s in listener.incoming() {
                    match s {
                        Ok(s) => {
                            may::go!(move || echo(s));
                        }
                        Err(e) => eprintln!("W3 may accept: {e}"),
                    }
                }
            });
            Ok(addr)
        }
        Runtime::Tokio => {
            // Leaked: the runtime must outlive every iteration, and the child
            // exits without tearing runtimes down.
            let rt: &'static tokio::runtime::Runtime =
                Box::leak(Box::new(runtimes::tokio_multi(WORKERS)));
            let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
            let addr = listener.local_addr()?;
            rt.spawn(async move {
                loop {
                    match listener.accept().await {
                        Ok((s, _)) => {
                            tokio::spawn(tokio_echo(s));
                        }
                        Err(e) => eprintln!("W3 tokio accept: {e}"),
                    }
                }
            });
            Ok(addr)
        }
    }
}

/// Accept loop shared by the coroutines and threads servers.
fn std_accept_loop(listener: TcpListener, mut serve: impl FnMut(TcpStream)) {
    loop {
        match listener.accept() {
            Ok((s, _)) => serve(s),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => eprintln!("W3 accept: {e}"),
        }
    }
}

/// Echo until EOF with blocking `Read`/`Write` (std's stream for
/// coroutines and threads, may's own stream for may).
fn echo<S: Read + Write>(mut s: S) {
    let mut buf = [0u8; 1024];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => {
                if s.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return,
        }
    }
}

async fn tokio_echo(mut s: tokio::net::TcpStream) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = [0u8; 1024];
    loop {
        match s.read(&mut buf).await {
            Ok(0) => return,
            Ok(n) => {
                if s.write_all(&buf[..n]).await.is_err() {
                    return;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return,
        }
    }
}
