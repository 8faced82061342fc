//! getaddrinfo: glibc resolves names with its own internal socket calls
//! (no hook reaches them) and may block for seconds, so a coroutine hands
//! the whole call to a helper thread (offload.rs) and parks. The real
//! function comes from `dlsym(RTLD_NEXT, "getaddrinfo")`, resolved once.

use std::sync::atomic::AtomicUsize;

type GetAddrInfo = unsafe extern "C" fn(
    *const libc::c_char,
    *const libc::c_char,
    *const libc::addrinfo,
    *mut *mut libc::addrinfo,
) -> libc::c_int;

static REAL: AtomicUsize = AtomicUsize::new(0);

fn real() -> GetAddrInfo {
    let p = crate::sys::resolve_next(&REAL, c"getaddrinfo");
    // SAFETY: `p` is libc's getaddrinfo, which has this signature.
    unsafe { std::mem::transmute::<usize, GetAddrInfo>(p) }
}

pub(crate) fn getaddrinfo(
    node: *const libc::c_char,
    service: *const libc::c_char,
    hints: *const libc::addrinfo,
    res: *mut *mut libc::addrinfo,
) -> libc::c_int {
    let f = real();
    if !crate::sched::in_coroutine_user_code() {
        // SAFETY: forwarded caller contract.
        return unsafe { f(node, service, hints, res) };
    }
    let (n, s, h, r) = (
        node as usize,
        service as usize,
        hints as usize,
        res as usize,
    );
    super::offload::offload(
        super::offload::Class::Unbounded,
        crate::observe::wait::Job::Dns(node),
        move || {
            // SAFETY: forwarded caller contract; the coroutine (owner of the
            // pointed-to data) is parked until this returns.
            unsafe { f(n as *const _, s as *const _, h as *const _, r as *mut _) }
        },
    )
}
