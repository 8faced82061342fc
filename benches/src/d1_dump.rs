//! D1: `coroutines::dump()` of 100,000 parked coroutines, and how long it
//! holds up the executors meanwhile.
//!
//! 100,000 coroutines park (`coroutines::park`). Two probe coroutines then
//! loop, each iteration waking one of the parked coroutines (which the
//! dump may be holding claimed), spawning a coroutine that yields once (it
//! enters the registry the dump walks, and leaves it at exit) and joining
//! it; each iteration's duration is recorded. The main thread takes 5
//! dumps without backtraces, then 1 with, while the probes run; before
//! that, the probes run for as long without any dump (the baseline).
//! Figures: the dump's time (median of 5, ms), the time with backtraces,
//! the longest time any dump held one registry shard (`Dump::
//! longest_hold`: the most a spawn, exit or wake-up can have waited for
//! it), and the probes' longest iteration without and with dumps running
//! (ms; on 2 CPUs the dumping thread also takes CPU time from the
//! executors, which this includes).
//!
//! Coroutines only: no peer has a comparable dump (Go's goroutine dump is
//! another language's runtime; tokio's task dump is unstable and needs a
//! special build).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::{report, Params, Runtime};

pub const PARKED: u64 = 100_000;

pub fn run(rt: Runtime, p: &Params) {
    assert_eq!(rt, Runtime::Coroutines, "D1 runs coroutines only");
    let n = p.count(PARKED) as usize;
    let stop = Arc::new(AtomicBool::new(false));
    let parked: Arc<Vec<coroutines::JoinHandle<()>>> = Arc::new(
        (0..n)
            .map(|_| {
                let stop = stop.clone();
                coroutines::spawn(move || {
                    while !stop.load(Ordering::Acquire) {
                        coroutines::park();
                    }
                })
            })
            .collect(),
    );
    // Let them all park.
    let opts = coroutines::DumpOptions::new().backtraces(false);
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(60) {
        let d = opts.capture();
        let waiting = d
            .coroutines()
            .iter()
            .filter(|c| c.wait == Some(coroutines::Wait::Park))
            .count();
        if waiting >= n {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }

    let mut hold: f64 = 0.0;
    let mut hold_cpu: f64 = 0.0;
    let mut probe_window = |dumping: bool| -> (f64, Vec<f64>, Option<f64>) {
        let run = Arc::new(AtomicBool::new(true));
        let worst = Arc::new(Mutex::new(0.0f64));
        let probes: Vec<_> = (0..2)
            .map(|k| {
                let run = run.clone();
                let worst = worst.clone();
                let parked = parked.clone();
                coroutines::spawn(move || {
                    let mut i = k * 7919;
                    let mut max = 0.0f64;
                    while run.load(Ordering::Relaxed) {
                        let t = Instant::now();
                        parked[i % parked.len()].coroutine().unpark();
                        i += 104_729;
                        coroutines::spawn(coroutines::yield_now).join().unwrap();
                        max = max.max(t.elapsed().as_secs_f64() * 1e3);
                    }
                    let mut w = worst.lock().unwrap();
                    *w = w.max(max);
                })
            })
            .collect();
        let mut times = Vec::new();
        let mut with_bt = None;
        if dumping {
            for _ in 0..5 {
                let d = opts.capture();
                times.push(d.took().as_secs_f64() * 1e3);
                hold = hold.max(d.longest_hold().as_secs_f64() * 1e3);
                hold_cpu = hold_cpu.max(d.longest_hold_cpu().as_secs_f64() * 1e3);
            }
            let d = coroutines::DumpOptions::new().capture();
            with_bt = Some(d.took().as_secs_f64() * 1e3);
            hold = hold.max(d.longest_hold().as_secs_f64() * 1e3);
            hold_cpu = hold_cpu.max(d.longest_hold_cpu().as_secs_f64() * 1e3);
        } else {
            std::thread::sleep(Duration::from_secs(2));
        }
        run.store(false, Ordering::Relaxed);
        for h in probes {
            h.join().unwrap();
        }
        let w = *worst.lock().unwrap();
        (w, times, with_bt)
    };
    let (base_worst, _, _) = probe_window(false);
    let (dump_worst, times, with_bt) = probe_window(true);
    let name = rt.name();
    report::emit("D1", name, "coroutines", n as f64);
    report::emit("D1", name, "dump_ms", report::median(&times));
    report::emit("D1", name, "dump_backtraces_ms", with_bt.unwrap_or(0.0));
    report::emit("D1", name, "longest_hold_ms", hold);
    report::emit("D1", name, "longest_hold_cpu_ms", hold_cpu);
    report::emit("D1", name, "probe_max_ms_idle", base_worst);
    report::emit("D1", name, "probe_max_ms_dumping", dump_worst);
    report::note(&format!(
        "dumps without backtraces took {:?} ms; probes' longest iteration {:.3} ms without dumps, {:.3} ms with",
        times.iter().map(|t| (t * 10.0).round() / 10.0).collect::<Vec<_>>(),
        base_worst,
        dump_worst
    ));
    stop.store(true, Ordering::Release);
    for h in parked.iter() {
        h.coroutine().unpark();
    }
    if let Ok(v) = Arc::try_unwrap(parked) {
        for h in v {
            h.join().unwrap();
        }
    }
}
