//! Description groups: fd numbers that share one open file description.
//!
//! O_NONBLOCK belongs to the open file description, not to the fd number:
//! after `dup`/`F_DUPFD` (std's `try_clone`) two numbers share it. When a
//! coroutine's lazy init makes one of them non-blocking, a plain thread
//! using the other one suddenly gets EAGAIN (tiny_http reads a connection
//! on its own thread through one number and answers through a clone: every
//! second keep-alive request failed). So the dup hooks (every caller,
//! plain threads too) put both numbers in one *description group* (a small
//! table under a mutex, touched only by dup, close of a grouped fd, the
//! lazy init, F_GETFL/F_SETFL/FIONBIO and a thread's unexpected EAGAIN);
//! the group records that the runtime set O_NONBLOCK and the user's own
//! view. Hot paths never look at it. Numbers shared outside the hooks
//! (fork, SCM_RIGHTS, `/proc/self/fd` reopen) are not grouped.
//!
//! The group id of an fd is its table entry's `desc` field
//! (registration.rs), changed only under the group table's lock.

use std::sync::atomic::Ordering;
use std::sync::Mutex;

use super::fd_state::Flags;
use super::registration::Registration;
use crate::sched::NoPreempt;

/// One description group (module doc).
struct Desc {
    /// Table entries carrying this group's id.
    refs: u32,
    /// The runtime set the kernel's O_NONBLOCK (a member's lazy init).
    runtime_nb: bool,
    /// The user's own O_NONBLOCK view while `runtime_nb`.
    user_nb: bool,
}

struct Descs {
    next: u32,
    map: Option<std::collections::HashMap<u32, Desc>>,
}

static DESCS: Mutex<Descs> = Mutex::new(Descs { next: 1, map: None });

/// The group table, locked with preemption off: a coroutine holding it is
/// never switched out, so a sibling (or a plain thread) only ever waits
/// for a few map operations. Field order: the lock is released first.
struct DescsGuard {
    g: std::sync::MutexGuard<'static, Descs>,
    _np: NoPreempt,
}

impl std::ops::Deref for DescsGuard {
    type Target = Descs;
    fn deref(&self) -> &Descs {
        &self.g
    }
}

impl std::ops::DerefMut for DescsGuard {
    fn deref_mut(&mut self) -> &mut Descs {
        &mut self.g
    }
}

fn descs() -> DescsGuard {
    let np = NoPreempt::new();
    DescsGuard {
        g: DESCS.lock().unwrap_or_else(|e| e.into_inner()),
        _np: np,
    }
}

/// Held across `fork` (the fork hook): the child's hooks (std's fork path
/// `dup2`s the child's stdio before exec) take this lock, which a thread
/// that does not exist in the child could otherwise hold forever.
pub(crate) fn fork_guard() -> impl Sized {
    descs()
}

/// `new` was just made a duplicate of `old` (dup, dup2/3, F_DUPFD): one
/// description group. If `old` is managed, the group starts with the
/// runtime's O_NONBLOCK and `old`'s user view.
pub(crate) fn share_desc(old: &Registration, new: &Registration) {
    let mut g = descs();
    let g = &mut *g;
    let map = g.map.get_or_insert_with(Default::default);
    let mut d = old.desc.load(Ordering::Relaxed);
    if d == 0 || !map.contains_key(&d) {
        d = g.next;
        g.next = g.next.wrapping_add(1).max(1);
        map.insert(
            d,
            Desc {
                refs: 1,
                runtime_nb: old.managed(),
                user_nb: old.flags().contains(Flags::USER_NONBLOCK),
            },
        );
        old.desc.store(d, Ordering::Relaxed);
    }
    let prev = new.desc.swap(d, Ordering::Relaxed);
    if let Some(e) = map.get_mut(&d) {
        e.refs += 1;
    }
    if prev != 0 && prev != d {
        drop_ref(map, prev);
    }
}

fn drop_ref(map: &mut std::collections::HashMap<u32, Desc>, d: u32) {
    if let Some(e) = map.get_mut(&d) {
        e.refs = e.refs.saturating_sub(1);
        if e.refs == 0 {
            map.remove(&d);
        }
    }
}

pub(super) fn leave_desc(reg: &Registration) {
    let mut g = descs();
    let d = reg.desc.swap(0, Ordering::Relaxed);
    if d != 0 {
        if let Some(map) = g.map.as_mut() {
            drop_ref(map, d);
        }
    }
}

/// The user's O_NONBLOCK view of `reg`'s description if the runtime made
/// it non-blocking through some member of its group; `None` otherwise.
pub(crate) fn desc_view(reg: &Registration) -> Option<bool> {
    if reg.desc.load(Ordering::Relaxed) == 0 {
        return None;
    }
    let g = descs();
    let d = reg.desc.load(Ordering::Relaxed);
    let e = g.map.as_ref()?.get(&d)?;
    e.runtime_nb.then_some(e.user_nb)
}

/// A member's lazy init is about to set O_NONBLOCK (`on`), or undoes it.
/// Called before the flag changes, so a plain thread that sees the EAGAIN
/// finds the group marked.
pub(crate) fn note_runtime_nonblock(reg: &Registration, on: bool) {
    if reg.desc.load(Ordering::Relaxed) == 0 {
        return;
    }
    let mut g = descs();
    let d = reg.desc.load(Ordering::Relaxed);
    if let Some(e) = g.map.as_mut().and_then(|m| m.get_mut(&d)) {
        e.runtime_nb = on;
        e.user_nb = false;
    }
}

/// The user set or cleared O_NONBLOCK through a member (F_SETFL, FIONBIO):
/// record the view for the whole group. Returns whether the runtime owns
/// the kernel flag (then it must stay set).
pub(crate) fn set_desc_view(reg: &Registration, on: bool) -> bool {
    if reg.desc.load(Ordering::Relaxed) == 0 {
        return false;
    }
    let mut g = descs();
    let d = reg.desc.load(Ordering::Relaxed);
    match g.map.as_mut().and_then(|m| m.get_mut(&d)) {
        Some(e) if e.runtime_nb => {
            e.user_nb = on;
            true
        }
        _ => false,
    }
}
