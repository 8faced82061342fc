//! Helpers shared by this package's tests: the child-process runner (tests
//! that need environment settings re-run their own binary for one test
//! with those settings) and the allocator churn workload.
#![allow(dead_code)]

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Set in the child process.
pub const CHILD_VAR: &str = "COROUTINES_TP_CHILD";

pub fn is_child() -> bool {
    std::env::var_os(CHILD_VAR).is_some()
}

/// Runs test `name` of executable `exe` as a child with `env`; a child
/// that hangs (a deadlock) is killed after `limit`. Returns its output.
pub fn run_child_of(
    exe: &std::path::Path,
    name: &str,
    env: &[(&str, &str)],
    limit: Duration,
) -> Output {
    let mut child = Command::new(exe)
        .args([name, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_VAR, "1")
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn child test process");
    let (mut so, mut se) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
    let t_out = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = std::io::Read::read_to_end(&mut so, &mut v);
        v
    });
    let t_err = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = std::io::Read::read_to_end(&mut se, &mut v);
        v
    });
    let start = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let st = child.wait().unwrap();
            let (o, e) = (t_out.join().unwrap(), t_err.join().unwrap());
            panic!(
                "child {name} hung for {limit:?} and was killed ({st})\nstdout:\n{}\nstderr:\n{}",
                String::from_utf8_lossy(&o),
                String::from_utf8_lossy(&e)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: t_out.join().unwrap(),
        stderr: t_err.join().unwrap(),
    }
}

/// Runs test `name` of this binary in a child with `env` and asserts it
/// passed; returns stdout + stderr.
pub fn run_child(name: &str, env: &[(&str, &str)]) -> String {
    let out = run_child_of(
        &std::env::current_exe().unwrap(),
        name,
        env,
        Duration::from_secs(120),
    );
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && text.contains("1 passed"),
        "child {name} failed ({}):\n{text}",
        out.status
    );
    eprintln!("{text}");
    text
}

/// Tiny deterministic PRNG (xorshift64*).
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

enum Item {
    Words(Vec<u64>, u64),
    Text(String, u64),
    Boxed(Box<[u8; 200]>, u64),
}

fn sum(v: &[u64]) -> u64 {
    v.iter().fold(0u64, |a, &x| a.rotate_left(5) ^ x)
}

fn sum_bytes(v: &[u8]) -> u64 {
    v.iter().fold(0u64, |a, &x| a.rotate_left(3) ^ x as u64)
}

impl Item {
    fn make(r: &mut Rng) -> Item {
        let seed = r.next();
        match seed % 3 {
            0 => {
                let n = (seed >> 8) as usize % 3000 + 1;
                let v: Vec<u64> = (0..n as u64).map(|i| i.wrapping_mul(seed)).collect();
                let s = sum(&v);
                Item::Words(v, s)
            }
            1 => {
                let n = (seed >> 8) as usize % 400 + 1;
                let mut s = String::with_capacity(8);
                for i in 0..n {
                    s.push((b'a' + ((seed as usize + i) % 26) as u8) as char);
                }
                let c = sum_bytes(s.as_bytes());
                Item::Text(s, c)
            }
            _ => {
                let mut b = Box::new([0u8; 200]);
                for (i, x) in b.iter_mut().enumerate() {
                    *x = (seed as usize).wrapping_add(i * 7) as u8;
                }
                let c = sum_bytes(&b[..]);
                Item::Boxed(b, c)
            }
        }
    }

    fn check(&self) -> bool {
        match self {
            Item::Words(v, s) => sum(v) == *s,
            Item::Text(t, s) => sum_bytes(t.as_bytes()) == *s,
            Item::Boxed(b, s) => sum_bytes(&b[..]) == *s,
        }
    }
}

/// The allocator churn workload (run inside a child configured with
/// `COROUTINES_SLICE=100us`, `COROUTINES_WORKERS=2`): 64 coroutines each
/// keep 64 live allocations of varied sizes and kinds and replace random
/// ones `rounds` times, verifying every checksum. Asserts completion and
/// that preemption still happened; prints the preemption stats.
pub fn churn(rounds: u64) {
    let handles: Vec<_> = (0..64u64)
        .map(|c| {
            coroutines::spawn(move || {
                let mut r = Rng(0x9E37_79B9_7F4A_7C15 ^ (c + 1));
                let mut live: Vec<Item> = (0..64).map(|_| Item::make(&mut r)).collect();
                let mut bad = 0u64;
                for _ in 0..rounds {
                    let i = (r.next() % 64) as usize;
                    let old = std::mem::replace(&mut live[i], Item::make(&mut r));
                    bad += !old.check() as u64;
                }
                bad += live.iter().filter(|x| !x.check()).count() as u64;
                bad
            })
        })
        .collect();
    let bad: u64 = handles.into_iter().map(|h| h.join().unwrap()).sum();
    let s = coroutines::stats();
    println!(
        "churn: preemptions {} signals {} deferred {} (c_code {}, foreign {}, zone {})",
        s.preemptions,
        s.preempt.signals,
        s.preempt.deferred(),
        s.preempt.deferred_c_code,
        s.preempt.deferred_foreign_code,
        s.preempt.deferred_zone
    );
    assert_eq!(bad, 0, "corrupted allocations");
    assert!(s.preemptions > 0, "no preemption happened: {:?}", s.preempt);
}
