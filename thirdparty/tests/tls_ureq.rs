//! HTTPS in coroutines: a rustls server (one coroutine per connection,
//! `rustls::StreamOwned` over a std `TcpStream`) and ureq's blocking client
//! (one shared `Agent` with its keep-alive pool) in 24 coroutines, GETs of
//! a 200 KB body and POSTs echoed back as a checksum. ring's C and assembly
//! do the crypto (C code in the executable: never preempted). Run on 2
//! executors with the default slice and with a 100 µs slice.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

const CLIENTS: usize = 24;
const ROUNDS: usize = 5;
const BODY: usize = 200_000;

fn body() -> Vec<u8> {
    (0..BODY as u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 11) as u8)
        .collect()
}

fn sum(b: &[u8]) -> u64 {
    b.iter()
        .enumerate()
        .map(|(i, &x)| (i as u64 + 1) * x as u64)
        .sum()
}

/// Serves HTTP/1.1 keep-alive requests on one TLS connection until EOF:
/// `GET /` answers the body, `POST /` the weighted sum of what was posted.
fn serve(tcp: std::net::TcpStream, cfg: Arc<rustls::ServerConfig>, payload: Arc<Vec<u8>>) -> usize {
    let conn = rustls::ServerConnection::new(cfg).unwrap();
    let mut r = BufReader::new(rustls::StreamOwned::new(conn, tcp));
    let mut served = 0;
    loop {
        let mut line = String::new();
        match r.read_line(&mut line) {
            Ok(0) => return served,
            Ok(_) => {}
            // A client that closes without close_notify.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return served,
            Err(e) => panic!("server read: {e}"),
        }
        let post = line.starts_with("POST");
        let mut len = 0usize;
        loop {
            let mut h = String::new();
            r.read_line(&mut h).unwrap();
            if h == "\r\n" {
                break;
            }
            let lower = h.to_ascii_lowercase();
            if let Some(v) = lower.strip_prefix("content-length:") {
                len = v.trim().parse().unwrap();
            }
        }
        let answer = if post {
            let mut b = vec![0u8; len];
            r.read_exact(&mut b).unwrap();
            sum(&b).to_string().into_bytes()
        } else {
            payload.to_vec()
        };
        let w = r.get_mut();
        write!(
            w,
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nContent-Type: application/octet-stream\r\n\r\n",
            answer.len()
        )
        .unwrap();
        w.write_all(&answer).unwrap();
        w.flush().unwrap();
        served += 1;
    }
}

fn workload() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let cert_der = cert.cert.der().clone();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(cert.key_pair.serialize_der().into());
    let server_cfg = Arc::new(
        rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(vec![cert_der.clone()], key)
            .unwrap(),
    );
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert_der).unwrap();
    let client_cfg = Arc::new(
        rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    );
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let payload = Arc::new(body());
    let p2 = payload.clone();
    let server = coroutines::spawn(move || {
        let mut conns = Vec::new();
        for s in listener.incoming() {
            let s = s.unwrap();
            // A zero-byte "connection" from the test ends the server.
            let mut peek = [0u8; 1];
            if s.peek(&mut peek).unwrap() == 0 {
                break;
            }
            let (cfg, p) = (server_cfg.clone(), p2.clone());
            conns.push(coroutines::spawn(move || serve(s, cfg, p)));
        }
        conns.into_iter().map(|h| h.join().unwrap()).sum::<usize>()
    });
    let agent = ureq::AgentBuilder::new()
        .tls_config(client_cfg)
        .timeout(Duration::from_secs(60))
        .resolver(
            move |_: &str| -> std::io::Result<Vec<std::net::SocketAddr>> {
                Ok(vec![([127, 0, 0, 1], port).into()])
            },
        )
        .build();
    let url = format!("https://localhost:{port}/");
    let hs: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let (agent, url, payload) = (agent.clone(), url.clone(), payload.clone());
            coroutines::spawn(move || {
                for k in 0..ROUNDS {
                    let resp = agent.get(&url).call().unwrap();
                    assert_eq!(resp.status(), 200);
                    let mut got = Vec::new();
                    resp.into_reader().read_to_end(&mut got).unwrap();
                    assert!(got == *payload, "client {c} round {k}: body differs");
                    let post: Vec<u8> =
                        (0..10_000 + c * 100 + k).map(|i| (i % 251) as u8).collect();
                    let resp = agent.post(&url).send_bytes(&post).unwrap();
                    assert_eq!(resp.into_string().unwrap(), sum(&post).to_string());
                }
                ROUNDS * 2
            })
        })
        .collect();
    let requests: usize = hs.into_iter().map(|h| h.join().unwrap()).sum();
    assert_eq!(requests, CLIENTS * ROUNDS * 2);
    drop(agent); // closes the pooled connections: their servers see EOF
    std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    assert_eq!(server.join().unwrap(), CLIENTS * ROUNDS * 2);
}

fn run(name: &str, env: &[(&str, &str)]) {
    if common::is_child() {
        workload();
        return;
    }
    common::run_child(name, env);
}

#[test]
fn https_ureq_rustls_two_executors() {
    run(
        "https_ureq_rustls_two_executors",
        &[("COROUTINES_WORKERS", "2")],
    );
}

#[test]
fn https_ureq_rustls_short_slice() {
    run(
        "https_ureq_rustls_short_slice",
        &[("COROUTINES_WORKERS", "2"), ("COROUTINES_SLICE", "100us")],
    );
}
