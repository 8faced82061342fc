//! Allocation-bound coroutines with jemalloc as the global allocator
//! (`THREADS=1` for OS threads); see `churn_mimalloc.rs`.
//! `cargo run --release -p coroutines-thirdparty --example churn_jemalloc`

#[global_allocator]
static A: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[path = "common/churn.rs"]
mod churn;

fn main() {
    churn::run("jemalloc");
}
