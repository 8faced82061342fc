//! jemalloc (tikv-jemallocator) as the global allocator: 64 coroutines churn allocations under
//! a 100 µs slice on 2 executors. jemalloc is C code linked into the
//! executable with non-reentrant per-thread heaps; preempting inside it and
//! running a sibling on the same thread corrupts the heap ("memory
//! allocation of N bytes failed"). The runtime must treat it as C code (no preemption inside it)
//! while still preempting the Rust code around it.

#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

mod common;

const ENV: &[(&str, &str)] = &[("COROUTINES_SLICE", "100us"), ("COROUTINES_WORKERS", "2")];

#[test]
fn jemalloc_churn() {
    if common::is_child() {
        common::churn(20_000);
        return;
    }
    let text = common::run_child("jemalloc_churn", ENV);
    assert!(text.contains("churn: preemptions"), "{text}");
}
