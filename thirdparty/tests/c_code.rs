//! Coroutines spinning inside C code (csrc/spin.c) under a 100 µs slice on
//! 2 executors: never preempted while a C frame is on the stack — RIP in
//! the C loop, or a Rust callback that C called while it "owns" the OS
//! thread — yet preempted in the Rust code between the C calls. The C code
//! counts a violation whenever a second caller enters on the same OS
//! thread while the first is still inside (what a preemption mid-C and a
//! sibling calling the same library would do to a C library's lock or
//! per-thread state).

mod common;

use std::time::{Duration, Instant};

use coroutines_thirdparty::{tp_spin, tp_violations, tp_with_callback};

/// Rust callback run under C's ownership: spins `us` microseconds.
extern "C" fn spin_rust(us: u64) -> u64 {
    let t = Instant::now();
    let mut x = us;
    while t.elapsed() < Duration::from_micros(us) {
        x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(1));
    }
    x
}

#[test]
fn c_code_is_not_preempted_rust_is() {
    if common::is_child() {
        let hs: Vec<_> = (1..=8u64)
            .map(|me| {
                coroutines::spawn(move || {
                    let t = Instant::now();
                    let mut acc = 0u64;
                    while t.elapsed() < Duration::from_millis(400) {
                        // Rust: preemptible.
                        acc ^= spin_rust(2000);
                        // C loop, ~1-3 ms: not preemptible.
                        // SAFETY: plain C function, no pointers.
                        acc ^= unsafe { tp_spin(me, 1_000_000) };
                        // Rust callback under C: not preemptible.
                        // SAFETY: `spin_rust` has the C signature expected.
                        acc ^= unsafe { tp_with_callback(me, spin_rust, 1000) };
                    }
                    acc
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
        let s = coroutines::stats();
        // SAFETY: reads an atomic counter.
        let v = unsafe { tp_violations() };
        println!(
            "c_code: violations {v} preemptions {} deferred_c_code {} deferred {}",
            s.preemptions,
            s.preempt.deferred_c_code,
            s.preempt.deferred()
        );
        assert_eq!(v, 0, "a coroutine was preempted inside C code");
        assert!(s.preempt.deferred_c_code > 0, "{:?}", s.preempt);
        assert!(s.preemptions > 0, "{:?}", s.preempt);
        return;
    }
    let text = common::run_child(
        "c_code_is_not_preempted_rust_is",
        &[("COROUTINES_SLICE", "100us"), ("COROUTINES_WORKERS", "2")],
    );
    assert!(text.contains("c_code: violations 0"), "{text}");
}

/// `COROUTINES_PREEMPT_C` puts a C function on the allow-list: then it is
/// preempted like Rust code (and the C loop sees the sibling enter).
#[test]
fn allow_listed_c_code_is_preempted() {
    if common::is_child() {
        let hs: Vec<_> = (1..=8u64)
            .map(|me| {
                coroutines::spawn(move || {
                    let t = Instant::now();
                    let mut acc = 0u64;
                    while t.elapsed() < Duration::from_millis(300) {
                        // SAFETY: plain C function, no pointers.
                        acc ^= unsafe { tp_spin(me, 1_000_000) };
                    }
                    acc
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
        let s = coroutines::stats();
        // SAFETY: reads an atomic counter.
        let v = unsafe { tp_violations() };
        println!("allowed: violations {v} preemptions {}", s.preemptions);
        assert!(s.preemptions > 0, "{:?}", s.preempt);
        assert!(v > 0, "allow-listed C code was never preempted");
        return;
    }
    common::run_child(
        "allow_listed_c_code_is_preempted",
        &[
            ("COROUTINES_SLICE", "100us"),
            ("COROUTINES_WORKERS", "2"),
            ("COROUTINES_PREEMPT_C", "tp_spin"),
        ],
    );
}

/// A malformed `COROUTINES_PREEMPT_C` is refused with one line naming the
/// variable, the value and the accepted form.
#[test]
fn bad_preempt_c_value_is_refused() {
    if common::is_child() {
        let e = coroutines::RuntimeBuilder::new().resolve().unwrap_err();
        println!("ERR: {e}");
        return;
    }
    let text = common::run_child(
        "bad_preempt_c_value_is_refused",
        &[("COROUTINES_PREEMPT_C", "deflate,3d,")],
    );
    let line = text
        .lines()
        .find_map(|l| l.split_once("ERR: ").map(|x| x.1))
        .unwrap_or_default();
    assert!(
        line.contains("COROUTINES_PREEMPT_C=\"deflate,3d,\"") && line.contains("prefixes"),
        "{text}"
    );
}
