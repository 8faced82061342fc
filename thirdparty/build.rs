fn main() {
    println!("cargo:rerun-if-changed=csrc/pthread_helpers.c");
    cc::Build::new()
        .file("csrc/pthread_helpers.c")
        .flag("-pthread")
        .compile("coroutines_thirdparty_c");
}
