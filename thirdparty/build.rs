//! Compiles `csrc/spin.c`, a small C library for the tests of C-code safe
//! points (tests/c_code.rs): a busy loop that detects being re-entered on
//! the same OS thread while it runs, and a variant that calls back into
//! Rust while "holding" that ownership.
fn main() {
    println!("cargo:rerun-if-changed=csrc/spin.c");
    cc::Build::new()
        .file("csrc/spin.c")
        .opt_level(2)
        .compile("tpspin");
}
