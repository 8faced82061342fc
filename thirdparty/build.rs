//! Compiles the tests' small C libraries: `csrc/spin.c` (C-code safe
//! points, tests/c_code.rs: a busy loop that detects being re-entered on
//! the same OS thread while it runs, and a variant that calls back into
//! Rust while "holding" that ownership) and `csrc/pthread_helpers.c`
//! (glibc pthread users, as a `-sys` crate's bundled sources would be), and
//! `csrc/fortified.c` (built with `_FORTIFY_SOURCE=2`: its reads and polls
//! go through glibc's checked `__read_chk`, `__recv_chk`, `__poll_chk`).
fn main() {
    println!("cargo:rerun-if-changed=csrc/spin.c");
    println!("cargo:rerun-if-changed=csrc/pthread_helpers.c");
    println!("cargo:rerun-if-changed=csrc/fortified.c");
    cc::Build::new()
        .file("csrc/spin.c")
        .opt_level(2)
        .compile("tpspin");
    cc::Build::new()
        .file("csrc/pthread_helpers.c")
        .flag("-pthread")
        .compile("coroutines_thirdparty_c");
    // As distributions build C libraries: the checked read/recv/poll forms.
    cc::Build::new()
        .file("csrc/fortified.c")
        .opt_level(2)
        .flag("-U_FORTIFY_SOURCE")
        .define("_FORTIFY_SOURCE", "2")
        .compile("tpfortified");
}
