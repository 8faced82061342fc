//! Outside CPU load for W4L and SP: busy processes competing with the
//! measured child for the machine's CPUs.
//!
//! The parent starts `OUTSIDE_PROCS` copies of this binary in the hidden
//! mode `bench --spin SECS` before each child of W4L/SP, waits until each
//! has said it is spinning, and kills them once the child has ended (or
//! timed out). Three things make sure a spinner never outlives its use:
//! `OutsideLoad`'s `Drop` kills and reaps them (also on an early return or
//! a panic in the parent), each spinner asks the kernel to SIGKILL it when
//! the parent thread that started it dies (`PR_SET_PDEATHSIG`), and each
//! stops by itself after SECS (the child's timeout plus a margin).
//!
//! The parent passes `BENCH_OUTSIDE_LOAD=<n>` to the measured child, which
//! only states it in a `NOTE` (a child run by hand has no outside load).
//! The spinners are not pinned and run at the default priority, like any
//! other busy process on the machine.

use std::io::{self, BufRead, BufReader, Write};
use std::os::raw::{c_int, c_long};
use std::path::Path;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{hog, report};

/// Busy processes started around each W4L/SP child.
pub const OUTSIDE_PROCS: usize = 2;
/// Environment variable telling the child how many spinners run.
pub const ENV: &str = "BENCH_OUTSIDE_LOAD";
/// What a spinner prints once it runs.
const READY: &str = "spinning";

extern "C" {
    fn prctl(option: c_int, ...) -> c_int;
    fn sysconf(name: c_int) -> c_long;
}

const PR_SET_PDEATHSIG: c_int = 1;
const SIGKILL: c_int = 9;
/// `_SC_CLK_TCK` on Linux (glibc).
const SC_CLK_TCK: c_int = 2;

/// `bench --spin SECS`: spins (the W4 hog loop) for `secs` seconds or until
/// killed.
pub fn spin(secs: f64) {
    // SAFETY: PR_SET_PDEATHSIG takes one integer argument (the signal);
    // prctl reads nothing else.
    unsafe { prctl(PR_SET_PDEATHSIG, SIGKILL as std::os::raw::c_ulong) };
    let deadline = Instant::now() + Duration::from_secs_f64(secs.max(0.0));
    let mut out = io::stdout().lock();
    let _ = writeln!(out, "{READY}");
    let _ = out.flush();
    drop(out);
    hog::hog(|| Instant::now() >= deadline);
}

/// The running spinners; dropping this kills and reaps them.
pub struct OutsideLoad {
    procs: Vec<(Child, ChildStdout)>,
    started: Instant,
}

impl OutsideLoad {
    /// Starts `n` spinners (`exe --spin SECS`, SECS = `max_life`) and waits
    /// until each runs. On error the ones already started are killed.
    pub fn start(exe: &Path, n: usize, max_life: Duration) -> io::Result<OutsideLoad> {
        let mut load = OutsideLoad {
            procs: Vec::with_capacity(n),
            started: Instant::now(),
        };
        for _ in 0..n {
            let mut child = Command::new(exe)
                .arg("--spin")
                .arg(format!("{:.0}", max_life.as_secs_f64().ceil()))
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()?;
            let stdout = child.stdout.take().expect("piped stdout");
            load.procs.push((child, stdout));
        }
        for (child, stdout) in &mut load.procs {
            let mut line = String::new();
            BufReader::new(stdout).read_line(&mut line)?;
            if line.trim() != READY {
                return Err(io::Error::other(format!(
                    "spinner {} did not start (said {line:?})",
                    child.id()
                )));
            }
        }
        load.started = Instant::now();
        Ok(load)
    }

    /// Kills the spinners and returns the share of `cpus` CPUs they used
    /// since they all ran, in percent (None if /proc could not be read).
    pub fn stop(mut self, cpus: usize) -> Option<f64> {
        let wall = self.started.elapsed().as_secs_f64();
        let cpu: Option<f64> = self.procs.iter().map(|(c, _)| cpu_secs(c.id())).sum();
        self.kill_all();
        cpu.map(|c| c / (wall * cpus.max(1) as f64) * 100.0)
    }

    fn kill_all(&mut self) {
        for (child, _) in &mut self.procs {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.procs.clear();
    }
}

impl Drop for OutsideLoad {
    fn drop(&mut self) {
        self.kill_all();
    }
}

/// User + system CPU time of a live process, from `/proc/<pid>/stat`.
fn cpu_secs(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name start at field 3 (state);
    // utime and stime are fields 14 and 15.
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut fields = rest.split_whitespace().skip(11);
    let utime: f64 = fields.next()?.parse().ok()?;
    let stime: f64 = fields.next()?.parse().ok()?;
    // SAFETY: sysconf only reads a configuration value.
    let tick = unsafe { sysconf(SC_CLK_TCK) };
    Some((utime + stime) / tick.max(1) as f64)
}

/// In a W4L/SP child: says in a `NOTE` whether the parent runs outside load.
pub fn note_outside_load() {
    match std::env::var(ENV) {
        Ok(n) => report::note(&format!(
            "outside load: {n} busy processes (`bench --spin`) started by the parent before this child and killed after it"
        )),
        Err(_) => report::note("NO outside load (child run by hand, without the parent)"),
    }
}
