//! Focused I/O hook tests: std::net, pipes, sleeps, errors and edges, all
//! from coroutines (the runtime's default executors).

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

#[test]
fn echo_smoke() {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let srv = coroutines::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        let mut buf = [0u8; 1024];
        loop {
            let n = s.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            s.write_all(&buf[..n]).unwrap();
        }
    });
    let cli = coroutines::spawn(move || {
        let mut s = TcpStream::connect(addr).unwrap();
        let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let d2 = data.clone();
        let mut r = s.try_clone().unwrap();
        let rd = coroutines::spawn(move || {
            let mut got = vec![0u8; d2.len()];
            r.read_exact(&mut got).unwrap();
            got == d2
        });
        s.write_all(&data).unwrap();
        s.shutdown(Shutdown::Write).unwrap();
        rd.join().unwrap()
    });
    assert!(cli.join().unwrap());
    srv.join().unwrap();
    let st = coroutines::stats();
    eprintln!("{st:?}");
}
