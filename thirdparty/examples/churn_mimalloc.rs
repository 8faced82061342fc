//! Allocation-bound coroutines with mimalloc as the global allocator
//! (`THREADS=1` for OS threads). With glibc's malloc, preempted coroutines
//! that move between executors run at ~0.4× threads' throughput (bench
//! A1); with mimalloc, which returns frees to the heap that owns them, at
//! parity. `cargo run --release -p coroutines-thirdparty --example churn_mimalloc`

#[global_allocator]
static A: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[path = "common/churn.rs"]
mod churn;

fn main() {
    churn::run("mimalloc");
}
