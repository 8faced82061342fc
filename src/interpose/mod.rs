//! Interposed libc functions: blocking std (and C) I/O, sleeps and name
//! lookups yield inside coroutines instead of blocking the executor.
//!
//! Problem: user code calls `read`, `accept`, `connect`, `nanosleep`… and
//! expects to block. On a coroutine that would block the executor and
//! every coroutine queued on it. These `#[no_mangle] extern "C"`
//! definitions carry the libc names, so the static link binds std's (and
//! every statically linked crate's) calls to them instead of libc.so's.
//!
//! Each shim is three lines calling its family module: io.rs (generic fd
//! I/O, fd bookkeeping, the poll family: poll/ppoll/select/pselect/
//! epoll_wait/epoll_pwait/epoll_pwait2 park on the reactor), net.rs
//! (sockets), fs.rs (regular files), time.rs (sleeps), dns.rs
//! (getaddrinfo), signal.rs (sigwait & co), offload.rs (helper threads: a capped pool for file I/O,
//! an uncapped one for waits without a bound), pthread.rs (pthread
//! mutexes, condvars, rwlocks, once; semaphores in pthread/sem.rs),
//! wait.rs (waiting for children and OS threads). The kernel is reached
//! by raw syscalls (sys.rs) or, for
//! getaddrinfo, libc's own function from `dlsym(RTLD_NEXT)`: never through
//! a libc symbol that is itself one of these hooks.
//!
//! Paths, decided once per call by `sched::in_coroutine_user_code()` (one
//! thread-local load):
//! 1. *not user code on a coroutine* (main thread, plain threads, helper
//!    threads, runtime code with a raised no-preempt level): the plain
//!    syscall. Only an EAGAIN on an fd the runtime made non-blocking
//!    behind a blocking user view costs more: a poll(2) wait, so plain
//!    threads keep blocking semantics.
//! 2. *user code on a coroutine*: the hook raises the no-preempt level
//!    (no preemption inside hook code), lazily registers the fd, and parks
//!    the coroutine when the call would block (io.rs).
//!
//! Exported symbols: every hook is defined once, in hooks.rs, through the
//! `hooks!` macro below, which also generates `EXPORTED` and the start-up
//! link check's table (`verify` checks every hook). By family: sockets
//! (net.rs); generic fd I/O, fd bookkeeping, the poll family and the
//! two-fd transfers sendfile/splice/tee (io.rs and its siblings);
//! regular files (fs.rs: the p*read/p*write family, open & co including
//! the fortified `__open_2` forms, a FIFO's open running on a helper
//! thread); sleeps (time.rs); getaddrinfo (dns.rs); signal waits
//! (signal.rs: the wait runs on a helper thread while the coroutine
//! parks); pthread mutexes, condvars, rwlocks, semaphores, once, barriers
//! and spin locks (pthread.rs, semaphores in pthread/sem.rs: glibc's own
//! functions do the work; a coroutine that must wait parks, or yields
//! between tries of a spin lock); waits for children and OS threads and posix_spawn (wait.rs);
//! `syscall` (futex.rs: emulates FUTEX_WAIT/WAKE for coroutines; every
//! other system call number passes straight through); `fork` (keeps a
//! fork child off the executor's shared TLS region, tls/alias.rs); and
//! `sched_yield` (yields the coroutine in coroutine user code).
//!
//! What still blocks an executor: reads and writes on `Pass` fds
//! (terminals, /dev/*, eventfd, timerfd, fds 0-2; waiting for them with
//! poll/select/epoll parks), `stat` and other metadata calls, an `open`
//! that waits in a device driver, waits for a child's stop/continue, C code issuing
//! syscalls itself, and libc's internal calls (glibc calls its own `__read`
//! etc., e.g. inside stdio).
//! Shared libraries (.so) calling `read` through their PLT do reach the
//! hooks: the executable exports them in its dynamic symbol table (checked
//! by `verify` with `dlsym(RTLD_DEFAULT)`).
//!
//! Rejected: LD_PRELOAD or a separate C library (the seed crate's way:
//! something to install, and easy to forget); patching libc's PLT/GOT at
//! run time (fragile, and std's calls do not go through libc.so's own
//! tables).
//!
//! Invariants: no shim unwinds (every family function is panic-free or
//! catches — offload re-raises a helper's panic only inside the coroutine,
//! where the coroutine's catch_unwind takes it); errno is set exactly as
//! the kernel would, on the calling thread; `verify` runs at start-up.

/// Defines the libc hooks (hooks.rs is the one invocation) and, from the
/// same list, `EXPORTED` and `LINKS`. Each entry is a hook's doc, then
/// `fn name(args) -> ret { body }` (`[unsafe] fn` for one that is unsafe
/// to call); it becomes `#[no_mangle] pub extern "C" fn name`, unchanged.
/// For the link check each entry also gets an `extern "C"` declaration of
/// the libc name with the same signature (module `libc_names`): what any
/// other call in the program to that name is bound to.
macro_rules! hooks {
    ($(
        $(#[$attr:meta])*
        $([$unsafe:ident])? fn $name:ident($($arg:ident : $ty:ty),* $(,)?) -> $ret:ty $body:block
    )*) => {
        $(
            $(#[$attr])*
            #[no_mangle]
            pub $($unsafe)? extern "C" fn $name($($arg: $ty),*) -> $ret $body
        )*

        /// Names of every `#[no_mangle]` hook (generated from the table).
        pub(crate) const EXPORTED: &[&str] = &[$(stringify!($name)),*];

        /// The program's own binding of each libc name: a declaration per
        /// hook, resolved by the linker like std's calls to the name.
        mod libc_names {
            $(
                #[allow(non_snake_case)]
                pub(super) mod $name {
                    #[allow(unused_imports)]
                    use super::super::*;
                    extern "C" {
                        pub(crate) fn $name($($arg: $ty),*) -> $ret;
                    }
                }
            )*
        }

        /// (name, the hook's address, the address calls to the libc name
        /// reach) for every hook, for `verify`. Taking the addresses also
        /// keeps every hook linked in every build (debug, release, LTO).
        pub(crate) fn links() -> Vec<(&'static str, usize, usize)> {
            vec![$((
                stringify!($name),
                $name as *const () as usize,
                libc_names::$name::$name as *const () as usize,
            )),*]
        }
    };
}

mod dns;
mod fdops;
mod fdpass;
mod fortify;
mod fs;
pub(crate) mod futex;
mod handoff;
mod hooks;
mod io;
mod net;
mod offload;
mod poll;
mod pthread;
mod signal;
mod time;
mod transfer;
mod wait;

/// A hook by path, for preempt/zones.rs's tests.
#[cfg(test)]
pub(crate) use hooks::read;
pub(crate) use hooks::EXPORTED;

pub(crate) use offload::DEFAULT_FILE_HELPERS;

/// (alive now, most at once) helper threads of the regular-file pool and
/// of the unbounded pool (getaddrinfo, unwatchable polls), for `stats()`.
/// The coroutine holding the pthread mutex or write-locked rwlock at
/// `addr`, as the pthread hooks track it (for `dump()`).
pub(crate) fn pthread_lock_owner(addr: usize) -> Option<u64> {
    pthread::lock_owner(addr)
}

pub(crate) fn helper_counts() -> ((usize, usize), (usize, usize)) {
    (
        offload::helper_counts(offload::Class::File),
        offload::helper_counts(offload::Class::Unbounded),
    )
}

/// Start-up check: every hook must be what the program's calls to the libc
/// name reach. Runtime start-up references this, which keeps the hooks
/// linked (`hooks::links`).
pub(crate) fn verify() -> Result<(), String> {
    let mut bad = Vec::new();
    for (name, ours, seen) in hooks::links() {
        // 1. Static binding: the program's (std's) calls to the libc name.
        // 2. Dynamic binding: what shared libraries calling the name get
        //    (the executable exports the hooks in .dynsym); null means not
        //    exported, which leaves only .so callers unhooked.
        let cname = std::ffi::CString::new(name).unwrap_or_default();
        // SAFETY: dlsym with a NUL-terminated name.
        let dynamic = unsafe { libc::dlsym(libc::RTLD_DEFAULT, cname.as_ptr()) } as usize;
        if std::hint::black_box(ours) != std::hint::black_box(seen)
            || (dynamic != 0 && dynamic != ours)
        {
            bad.push(name);
        }
    }
    if bad.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "calls to {} do not reach the coroutines hooks (they bind to libc directly); \
             the crate's hook object was not linked into this binary",
            bad.join(", ")
        ))
    }
}

#[cfg(test)]
mod tests {
    /// Every source file of this module, for the scan below.
    const SOURCES: &[(&str, &str)] = &[
        ("dns.rs", include_str!("dns.rs")),
        ("fdops.rs", include_str!("fdops.rs")),
        ("fs.rs", include_str!("fs.rs")),
        ("futex.rs", include_str!("futex.rs")),
        ("handoff.rs", include_str!("handoff.rs")),
        ("hooks.rs", include_str!("hooks.rs")),
        ("io.rs", include_str!("io.rs")),
        ("mod.rs", include_str!("mod.rs")),
        ("net.rs", include_str!("net.rs")),
        ("offload.rs", include_str!("offload.rs")),
        ("poll.rs", include_str!("poll.rs")),
        ("pthread.rs", include_str!("pthread.rs")),
        ("signal.rs", include_str!("signal.rs")),
        ("time.rs", include_str!("time.rs")),
        ("transfer.rs", include_str!("transfer.rs")),
        ("wait.rs", include_str!("wait.rs")),
    ];

    /// The generated list has no duplicates, covers every entry of the
    /// `hooks!` table and every hand-written `#[no_mangle]` function in
    /// src/interpose, and `links()` checks each of them.
    #[test]
    fn exported_is_complete() {
        let mut seen = std::collections::HashSet::new();
        for h in super::EXPORTED {
            assert!(seen.insert(*h), "{h} listed twice");
        }
        // `name` of a line defining `fn name(`.
        let fn_name = |line: &str| -> Option<String> {
            let (_, rest) = line.split_once("fn ")?;
            Some(rest.split('(').next()?.trim().to_string())
        };
        let mut found = 0;
        for (file, text) in SOURCES {
            let lines: Vec<&str> = text.lines().collect();
            for (i, l) in lines.iter().enumerate() {
                // Hand-written: `#[no_mangle]`, then the definition (the
                // macro's own template, `$name`, is not a hook).
                if l.trim_start().starts_with("#[no_mangle]") {
                    let name = lines[i + 1..].iter().find_map(|l| fn_name(l));
                    let name = name.unwrap_or_else(|| panic!("{file}: no fn after line {i}"));
                    if !name.starts_with('$') {
                        assert!(
                            seen.contains(name.as_str()),
                            "{file}: {name} not in EXPORTED"
                        );
                        found += 1;
                    }
                }
                // Table entries (hooks.rs): `fn name(` at the entry indent.
                if *file == "hooks.rs"
                    && (l.starts_with("    fn ") || l.starts_with("    [unsafe] fn "))
                {
                    let name = fn_name(l).unwrap();
                    assert!(seen.contains(name.as_str()), "{name} not in EXPORTED");
                    found += 1;
                }
            }
        }
        assert_eq!(found, super::EXPORTED.len(), "hooks found in the sources");
        let links = super::hooks::links();
        assert_eq!(links.len(), super::EXPORTED.len());
        for ((name, _, _), h) in links.iter().zip(super::EXPORTED) {
            assert_eq!(name, h);
        }
    }
}
