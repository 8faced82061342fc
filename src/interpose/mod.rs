//! Interposers: `#[no_mangle] extern "C"` functions with libc's names.
//! Inside the final binary they win over libc.so, for std and for every
//! statically linked crate; each is a thin shim into one module here.
//!
//! Exported libc symbols:
//! - `syscall` (futex.rs): emulates FUTEX_WAIT/WAKE for coroutines; every
//!   other system call number passes straight through.

pub(crate) mod futex;
