//! Allocation-bound coroutines with glibc's malloc, the default global
//! allocator (`THREADS=1` for OS threads); see `churn_mimalloc.rs`.
//! `cargo run --release -p coroutines-thirdparty --example churn_glibc`

#[path = "common/churn.rs"]
mod churn;

fn main() {
    churn::run("glibc");
}
