//! Helpers shared by the stress tests.
#![allow(dead_code)]

use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// Re-runs the current test binary for exactly one test (`name`), with
/// `COROUTINES_TEST_CHILD=1` and the given extra environment. The child
/// test body checks `is_child()` to run the real workload.
pub fn run_child(name: &str, env: &[(&str, &str)]) -> Output {
    let exe = std::env::current_exe().expect("current_exe");
    let mut cmd = Command::new(exe);
    cmd.args(["--exact", name, "--nocapture", "--test-threads=1"]);
    cmd.env("COROUTINES_TEST_CHILD", "1");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("spawn child test process")
}

pub fn is_child() -> bool {
    std::env::var_os("COROUTINES_TEST_CHILD").is_some()
}

pub fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Tiny deterministic PRNG (xorshift64*), so failures reproduce.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

/// Like `Command::output`, but a child that hangs (a preemption bug
/// would show that way) is killed after `limit` and fails the test.
pub fn output_with_deadline(mut cmd: Command, limit: Duration) -> std::process::Output {
    use std::io::Read;
    use std::process::Stdio;
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut so = child.stdout.take().unwrap();
    let mut se = child.stderr.take().unwrap();
    let t_out = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = so.read_to_end(&mut v);
        v
    });
    let t_err = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = se.read_to_end(&mut v);
        v
    });
    let start = Instant::now();
    let mut timed_out = false;
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if start.elapsed() > limit {
            timed_out = true;
            let _ = child.kill();
            break child.wait().unwrap();
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let (stdout, stderr) = (t_out.join().unwrap(), t_err.join().unwrap());
    assert!(
        !timed_out,
        "child hung for {limit:?} and was killed\nstdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&stdout),
        String::from_utf8_lossy(&stderr)
    );
    std::process::Output {
        status,
        stdout,
        stderr,
    }
}

/// Runs `body` when this process is the child for the current test;
/// otherwise re-runs this test binary for test `name` only, with
/// `child_var` set and `env`, and fails unless the child passes within
/// `limit` (a hang — a deadlock — is killed and fails the test).
pub fn in_child(
    child_var: &str,
    name: &str,
    env: &[(&str, &str)],
    limit: Duration,
    body: impl FnOnce(),
) {
    if std::env::var_os(child_var).is_some() {
        body();
        return;
    }
    run_test_child(child_var, name, env, limit, &[]);
}

/// Re-runs this test binary for test `name` only (plus `extra` harness
/// arguments), with `child_var` set and `env`; fails unless the child
/// passes within `limit`, and prints its output.
fn run_test_child(
    child_var: &str,
    name: &str,
    env: &[(&str, &str)],
    limit: Duration,
    extra: &[&str],
) {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([name, "--exact", "--nocapture", "--test-threads=1"])
        .args(extra)
        .env(child_var, "1")
        .envs(env.iter().copied());
    let out = output_with_deadline(cmd, limit);
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && text.contains("1 passed"),
        "child {name} ({env:?}) failed ({}):\n{text}",
        out.status
    );
    eprintln!("{text}");
}

/// Runs test `name` of this binary as a child with `child_var=name` and
/// `env`, killed after 120 s; asserts it succeeded and returns its stdout.
pub fn run_named_child(child_var: &str, name: &str, env: &[(&str, &str)]) -> String {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["--exact", name, "--nocapture", "--test-threads=1"])
        .env(child_var, name);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = output_with_deadline(cmd, Duration::from_secs(120));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "child {name} failed: {:?}\nstdout (tail):\n{}\nstderr:\n{stderr}",
        out.status,
        &stdout[stdout.len().saturating_sub(4000)..]
    );
    stdout
}

/// Whether this process is the child started by `run_named_child` for test
/// `name` (`child_var` holds the test name).
pub fn is_named_child(child_var: &str, name: &str) -> bool {
    std::env::var(child_var).as_deref() == Ok(name)
}

/// A CPU hog for preemption tests: spins until `stop`, counting batches of
/// 1,000 iterations in `count`; never calls into the runtime.
pub fn hog(
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    count: std::sync::Arc<std::sync::atomic::AtomicU64>,
) {
    use std::sync::atomic::Ordering;
    let mut x = 0u64;
    while !stop.load(Ordering::Relaxed) {
        for _ in 0..1000 {
            x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
        }
        count.fetch_add(1, Ordering::Relaxed);
    }
    std::hint::black_box(x);
}

/// Joins every coroutine, in order, unwrapping each result.
pub fn join_all<T>(hs: Vec<coroutines::JoinHandle<T>>) -> Vec<T> {
    hs.into_iter().map(|h| h.join().unwrap()).collect()
}

/// Text that compresses like real data but is not trivially repetitive.
pub fn corpus(seed: u64, len: usize) -> Vec<u8> {
    let words = [
        "coroutine ",
        "executor ",
        "stack ",
        "preempt ",
        "signal ",
        "thread ",
        "local ",
        "futex ",
        "reactor ",
        "epoll\n",
        "{\"k\": 1} ",
        "0123456789 ",
    ];
    let mut r = Rng(seed | 1);
    let mut v = Vec::with_capacity(len + 16);
    while v.len() < len {
        let w = words[(r.next() % words.len() as u64) as usize];
        v.extend_from_slice(w.as_bytes());
        if r.next() % 7 == 0 {
            v.extend_from_slice(format!("{} ", r.next() % 100_000).as_bytes());
        }
    }
    v.truncate(len);
    v
}

/// A crate-battery scenario (stress/crates*.rs): in the child for test
/// In a test child: after 30 s, print `coroutines::dump()` and exit with
/// status 1 (the parent's deadline would wait for output pipes a stuck
/// grandchild may hold).
#[allow(dead_code)] // not every test binary uses it
pub fn watchdog() {
    std::thread::spawn(|| {
        std::thread::sleep(Duration::from_secs(30));
        eprintln!("watchdog: still running after 30 s\n{}", coroutines::dump());
        std::process::exit(1);
    });
}

/// `name` (`child_var` set) runs `body` under a 30 s watchdog that prints
/// `coroutines::dump()` and fails (the parent's deadline would wait for
/// output pipes a stuck grandchild may hold), then prints the executor
/// blocking reports it saw; in the parent runs that child twice, with 2
/// executors and the default slice and with a 100 µs slice. The child
/// also runs a test marked `#[ignore]` (the parent was asked to).
#[allow(dead_code)] // used by the crate batteries only
pub fn battery(child_var: &str, name: &str, body: impl Fn()) {
    if std::env::var_os(child_var).is_some() {
        watchdog();
        body();
        for r in coroutines::blocking_reports() {
            eprintln!(
                "blocking report: executor {} in {} for {:?} (coroutine {:?})",
                r.executor, r.syscall, r.blocked_for, r.coroutine
            );
        }
        return;
    }
    for env in [
        &[("COROUTINES_WORKERS", "2")][..],
        &[("COROUTINES_WORKERS", "2"), ("COROUTINES_SLICE", "100us")][..],
    ] {
        run_test_child(
            child_var,
            name,
            env,
            Duration::from_secs(120),
            &["--include-ignored"],
        );
    }
}

/// Sends `fd` over the Unix socket `via` as SCM_RIGHTS with one data byte.
pub fn send_fd(via: &std::os::unix::net::UnixStream, fd: i32) {
    let mut byte = [b'F'];
    let mut iov = libc::iovec {
        iov_base: byte.as_mut_ptr().cast(),
        iov_len: 1,
    };
    // SAFETY: CMSG_SPACE is a size computation.
    let space = unsafe { libc::CMSG_SPACE(4) } as usize;
    let mut cbuf = vec![0u64; space.div_ceil(8)];
    // SAFETY: all-zero is a valid msghdr; the fields point at our live
    // buffers; the CMSG macros stay inside `cbuf`.
    unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = cbuf.as_mut_ptr().cast();
        msg.msg_controllen = space;
        let c = libc::CMSG_FIRSTHDR(&msg);
        (*c).cmsg_level = libc::SOL_SOCKET;
        (*c).cmsg_type = libc::SCM_RIGHTS;
        (*c).cmsg_len = libc::CMSG_LEN(4) as usize;
        (libc::CMSG_DATA(c) as *mut i32).write_unaligned(fd);
        assert_eq!(
            libc::sendmsg(std::os::fd::AsRawFd::as_raw_fd(via), &msg, 0),
            1
        );
    }
}

/// Receives one fd sent by `send_fd`.
pub fn recv_fd(via: &std::os::unix::net::UnixStream) -> i32 {
    let mut byte = [0u8];
    let mut iov = libc::iovec {
        iov_base: byte.as_mut_ptr().cast(),
        iov_len: 1,
    };
    // SAFETY: a size computation.
    let space = unsafe { libc::CMSG_SPACE(4) } as usize;
    let mut cbuf = vec![0u64; space.div_ceil(8)];
    // SAFETY: as in `send_fd`; the kernel fills our buffers.
    unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = cbuf.as_mut_ptr().cast();
        msg.msg_controllen = space;
        assert_eq!(
            libc::recvmsg(std::os::fd::AsRawFd::as_raw_fd(via), &mut msg, 0),
            1
        );
        let c = libc::CMSG_FIRSTHDR(&msg);
        assert!(!c.is_null() && (*c).cmsg_type == libc::SCM_RIGHTS);
        (libc::CMSG_DATA(c) as *const i32).read_unaligned()
    }
}
