//! Runtime set-up shared by the workloads. `coroutines` takes its executor
//! count from `COROUTINES_WORKERS`, which the parent sets per child.

/// A tokio multi-thread runtime with `workers` worker threads, time and I/O on.
pub fn tokio_multi(workers: usize) -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .expect("build tokio runtime")
}

/// A tokio current-thread runtime (W1), time and I/O on.
pub fn tokio_current() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("build tokio runtime")
}

/// Configures may's global scheduler; must run before may's first use in the
/// process. Everything else (stack size 0x1000 words = 32 KiB, worker
/// pinning, pool capacity) stays at may's defaults.
pub fn may_workers(workers: usize) {
    may::config().set_workers(workers);
}
