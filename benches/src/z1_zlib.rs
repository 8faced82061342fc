//! Z1 zlib: what not preempting C code costs. 8 tasks on 2 workers each
//! compress a 256 KiB buffer with zlib's `compress2` (level 6; libz-sys,
//! zlib built from source and linked statically: C code inside the
//! executable) again and again for 3 s. Figures: total throughput (MB/s of
//! input) and Jain's fairness index over the bytes each task compressed.
//!
//! The parent runs coroutines twice: with the default allow-list (zlib's
//! functions preemptible: `mb_per_s`, `jain`) and with
//! `COROUTINES_PREEMPT_C=none` (zlib is a no-preempt C zone, each
//! `compress2` call of ~5-10 ms runs to its end: `mb_per_s_noallow`,
//! `jain_noallow`). Threads: 8 OS threads.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::{report, Params, Runtime};

pub const TASKS: usize = 8;
pub const DURATION: Duration = Duration::from_secs(3);
pub const ALLOW_ENV: &str = "COROUTINES_PREEMPT_C";
const INPUT: usize = 256 * 1024;

// zlib's one-shot compressor; libz-sys links the library but does not bind
// this function.
extern "C" {
    fn compress2(
        dest: *mut u8,
        dest_len: *mut libz_sys::uLongf,
        source: *const u8,
        source_len: libz_sys::uLong,
        level: std::ffi::c_int,
    ) -> std::ffi::c_int;
}

fn input() -> Vec<u8> {
    // Compressible but not trivial: words from a small vocabulary chosen by
    // a PRNG.
    let words: [&[u8]; 8] = [
        b"coroutine ",
        b"executor ",
        b"preempt ",
        b"zlib ",
        b"deflate ",
        b"slice ",
        b"fairness ",
        b"thread ",
    ];
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    let mut v = Vec::with_capacity(INPUT + 16);
    while v.len() < INPUT {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(words[(x % 8) as usize]);
        if x % 5 == 0 {
            v.extend_from_slice(&x.to_le_bytes());
        }
    }
    v.truncate(INPUT);
    v
}

/// One task: compresses `data` until `deadline`; returns input bytes done.
fn task(data: &[u8], deadline: Instant) -> u64 {
    let mut out = vec![0u8; INPUT + INPUT / 100 + 64];
    let mut done = 0u64;
    while Instant::now() < deadline {
        let mut out_len = out.len() as libz_sys::uLongf;
        // SAFETY: `out` has `out_len` writable bytes, `data` is readable for
        // its length; compress2 writes at most `out_len` bytes.
        let r = unsafe {
            compress2(
                out.as_mut_ptr(),
                &mut out_len,
                data.as_ptr(),
                data.len() as libz_sys::uLong,
                6,
            )
        };
        assert_eq!(r, libz_sys::Z_OK, "compress2 failed");
        done += data.len() as u64;
    }
    done
}

pub fn run(rt: Runtime, p: &Params) {
    let data = Arc::new(input());
    let dur = p.duration(DURATION);
    let t0 = Instant::now();
    let deadline = t0 + dur;
    let bytes: Vec<f64> = match rt {
        Runtime::Coroutines => {
            let hs: Vec<_> = (0..TASKS)
                .map(|_| {
                    let d = data.clone();
                    coroutines::spawn(move || task(&d, deadline))
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap() as f64).collect()
        }
        Runtime::Threads => {
            let hs: Vec<_> = (0..TASKS)
                .map(|_| {
                    let d = data.clone();
                    std::thread::spawn(move || task(&d, deadline))
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap() as f64).collect()
        }
        _ => unreachable!("Z1 runs coroutines and threads"),
    };
    let secs = t0.elapsed().as_secs_f64();
    let total: f64 = bytes.iter().sum();
    let noallow =
        rt == Runtime::Coroutines && std::env::var(ALLOW_ENV).is_ok_and(|v| v.trim() == "none");
    let sfx = if noallow { "_noallow" } else { "" };
    report::emit(
        "Z1",
        rt.name(),
        &format!("mb_per_s{sfx}"),
        total / secs / 1e6,
    );
    report::emit("Z1", rt.name(), &format!("jain{sfx}"), report::jain(&bytes));
    if rt == Runtime::Coroutines {
        let s = coroutines::stats();
        report::note(&format!(
            "{}: preemptions {}, deferred_c_code {}, per-task MB {:?}",
            if noallow {
                "zlib not allowed"
            } else {
                "zlib allowed"
            },
            s.preemptions,
            s.preempt.deferred_c_code,
            bytes.iter().map(|b| (b / 1e6).round()).collect::<Vec<_>>()
        ));
    }
}
