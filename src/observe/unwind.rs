//! Unwinding a stack that is not the calling thread's, from saved registers.
//!
//! std's `Backtrace` and libgcc's `_Unwind_Backtrace` start from the
//! calling thread's own registers. A suspended coroutine's registers are in
//! its switch frame (or, preempted, in the save area below it), and a
//! blocked executor's are what `/proc/self/task/<tid>/syscall` reports; this
//! module walks from there with the `.eh_frame` call-frame information
//! (CFI) of the loaded objects, read with gimli.
//!
//! Unwind tables: for every object `dl_iterate_phdr` reports, the
//! `PT_GNU_EH_FRAME` segment is `.eh_frame_hdr` (already mapped); its
//! binary-search table gives the FDE of a program counter in `.eh_frame`
//! (which ends, at the latest, with the `PT_LOAD` segment containing it).
//! The parsed headers and the objects' executable ranges are cached in a
//! leaked [`Objects`] table, rebuilt when `dlpi_adds`/`dlpi_subs` move (a
//! `dlopen`/`dlclose`; old tables are leaked, like preempt/zones.rs does,
//! since another unwinder may still hold one). Limitation: an object
//! `dlclose`d *while* an unwind reads its tables leaves a dangling slice
//! (the same race std's backtrace has without the loader lock).
//!
//! `.eh_frame` is there in every build with `panic = "unwind"` (the
//! default), including a `debug = 0` release build and a binary stripped
//! of its symbol table: unwinding needs no DWARF debug info.
//!
//! The walk (one step per frame): find the FDE of the program counter
//! (`pc - 1` for return addresses: the call instruction may be the last of
//! its function), evaluate the row's CFA rule (register + offset; a DWARF
//! expression stops the walk), the return address rule, and the rules of
//! the callee-saved registers (RBX, RBP, R12-R15: `Undefined`, `SameValue`,
//! `Offset`, `ValOffset`, `Register`; expressions make the register
//! unknown). It stops at a pc without FDE, an unreadable CFA slot, a return
//! address of 0 (the zero words at the top of a coroutine stack) or a stack
//! pointer that does not grow. Memory is read through [`Memory`], so a
//! stack that may change or vanish meanwhile is read with
//! `process_vm_readv` ([`ProcMemory`]) or from a copy ([`CopyMemory`]),
//! never dereferenced.

use std::cell::Cell;
use std::sync::atomic::{AtomicPtr, Ordering};
use std::sync::{Mutex, OnceLock};

use gimli::{
    BaseAddresses, CfaRule, EhFrame, EhFrameHdr, EndianSlice, LittleEndian, ParsedEhFrameHdr,
    Register, RegisterRule, UnwindContext, UnwindContextStorage, UnwindSection, X86_64,
};

use crate::arch;

type Slice = EndianSlice<'static, LittleEndian>;

/// Registers an unwind step needs; `None` = unknown.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Regs {
    pub(crate) rip: Option<u64>,
    pub(crate) rsp: Option<u64>,
    pub(crate) rbp: Option<u64>,
    pub(crate) rbx: Option<u64>,
    pub(crate) r12: Option<u64>,
    pub(crate) r13: Option<u64>,
    pub(crate) r14: Option<u64>,
    pub(crate) r15: Option<u64>,
}

impl Regs {
    fn get(&self, r: Register) -> Option<u64> {
        match r {
            X86_64::RSP => self.rsp,
            X86_64::RBP => self.rbp,
            X86_64::RBX => self.rbx,
            X86_64::R12 => self.r12,
            X86_64::R13 => self.r13,
            X86_64::R14 => self.r14,
            X86_64::R15 => self.r15,
            X86_64::RA => self.rip,
            _ => None,
        }
    }
}

/// Where an unwind reads stack words from.
pub(crate) trait Memory {
    /// The 8 bytes at `addr`, or None if they cannot be read.
    fn read_u64(&self, addr: u64) -> Option<u64>;
}

/// Reads directly, but only inside `[lo, hi)`: for a stack the caller owns
/// and that does not change while it is read (a suspended coroutine that
/// cannot be resumed meanwhile, or the frames of the calling thread above
/// the unwinder's own).
// Used by `coroutines::dump()` (issue #12), and by the tests.
pub(crate) struct StackMemory {
    pub(crate) lo: u64,
    pub(crate) hi: u64,
}

impl Memory for StackMemory {
    fn read_u64(&self, addr: u64) -> Option<u64> {
        if addr < self.lo || addr.checked_add(8)? > self.hi {
            return None;
        }
        // SAFETY: [lo, hi) is mapped and stable for the unwind (the
        // constructor's contract, see the type doc).
        Some(unsafe { (addr as *const u64).read_unaligned() })
    }
}

/// Reads a live thread's stack with `process_vm_readv` on our own pid: a
/// stack that changes or is unmapped meanwhile gives wrong words or None,
/// never a fault. Reads 1 KiB aligned blocks and keeps the last one, so a
/// walk costs about one system call per KiB of stack. Reads after
/// `deadline` fail (the walk stops).
// Used by `coroutines::dump()` (issue #12), and by the tests.
#[cfg_attr(not(test), allow(dead_code))] // used by tests (a live thread's stack); the report copies
pub(crate) struct ProcMemory {
    deadline: Option<std::time::Instant>,
    block: std::cell::RefCell<(u64, usize, [u8; PROC_BLOCK])>,
}

// Used by `coroutines::dump()` (issue #12), and by the tests.
#[cfg_attr(not(test), allow(dead_code))] // used by tests (a live thread's stack); the report copies
const PROC_BLOCK: usize = 1024;

// Used by `coroutines::dump()` (issue #12), and by the tests.
#[cfg_attr(not(test), allow(dead_code))] // used by tests (a live thread's stack); the report copies
impl ProcMemory {
    pub(crate) fn new(deadline: Option<std::time::Instant>) -> Self {
        ProcMemory {
            deadline,
            block: std::cell::RefCell::new((u64::MAX, 0, [0; PROC_BLOCK])),
        }
    }
}

/// Copies up to `buf.len()` bytes at `addr` of this process with
/// `process_vm_readv`; returns how many were read (0 on EFAULT).
pub(crate) fn read_own(addr: u64, buf: &mut [u8]) -> usize {
    let local = libc::iovec {
        iov_base: buf.as_mut_ptr() as *mut libc::c_void,
        iov_len: buf.len(),
    };
    let remote = libc::iovec {
        iov_base: addr as *mut libc::c_void,
        iov_len: buf.len(),
    };
    // SAFETY: the kernel writes at most `buf.len()` bytes into `buf` and
    // only reads the remote range (failing with EFAULT, not faulting, if
    // it is unmapped).
    let n = unsafe { libc::process_vm_readv(libc::getpid(), &local, 1, &remote, 1, 0) };
    if n < 0 {
        0
    } else {
        n as usize
    }
}

impl Memory for ProcMemory {
    fn read_u64(&self, addr: u64) -> Option<u64> {
        let base = addr & !(PROC_BLOCK as u64 - 1);
        let off = (addr - base) as usize;
        let mut b = self.block.borrow_mut();
        if b.0 != base {
            if self.deadline.is_some_and(|d| std::time::Instant::now() > d) {
                return None;
            }
            let n = read_own(base, &mut b.2);
            b.0 = base;
            b.1 = n;
        }
        if off + 8 <= b.1 {
            Some(u64::from_le_bytes(b.2[off..off + 8].try_into().ok()?))
        } else if off + 8 > PROC_BLOCK && off < b.1 {
            // A word crossing the block's end (unaligned stack slot).
            let mut w = [0u8; 8];
            drop(b);
            (read_own(addr, &mut w) == 8).then(|| u64::from_le_bytes(w))
        } else {
            None
        }
    }
}

/// A copy of a stack region taken earlier (`base` = the address of
/// `bytes[0]`): an unwind over it cannot race with the thread it came from.
pub(crate) struct CopyMemory {
    pub(crate) base: u64,
    pub(crate) bytes: Vec<u8>,
}

impl Memory for CopyMemory {
    fn read_u64(&self, addr: u64) -> Option<u64> {
        let off = usize::try_from(addr.checked_sub(self.base)?).ok()?;
        let w = self.bytes.get(off..off.checked_add(8)?)?;
        Some(u64::from_le_bytes(w.try_into().ok()?))
    }
}

/// One loaded object's unwind tables.
pub(crate) struct Object {
    /// Executable `PT_LOAD` ranges, absolute.
    text: Vec<(u64, u64)>,
    /// The object is libgcc's unwinder (`libgcc_s`), which reads the
    /// return addresses of its own callers (panics, backtraces).
    unwinder: bool,
    bases: BaseAddresses,
    eh_frame: EhFrame<Slice>,
    hdr: ParsedEhFrameHdr<Slice>,
}

/// The unwind tables of every loaded object with a `.eh_frame_hdr`.
struct Objects {
    objects: Vec<Object>,
    adds: u64,
    subs: u64,
}

static OBJECTS: AtomicPtr<Objects> = AtomicPtr::new(std::ptr::null_mut());
static BUILD: Mutex<()> = Mutex::new(());

fn loader_counts() -> (u64, u64) {
    let mut r = (0, 0);
    crate::sys::for_each_object(|info| {
        r = (info.dlpi_adds, info.dlpi_subs);
        false // global counters: the first object suffices
    });
    r
}

/// The current tables, rebuilt if objects were loaded or unloaded.
fn objects() -> &'static Objects {
    let counts = loader_counts();
    // Acquire: pairs with the Release store below (the table's contents).
    let p = OBJECTS.load(Ordering::Acquire);
    // SAFETY: a published table is leaked, never freed.
    if let Some(t) = unsafe { p.as_ref() } {
        if (t.adds, t.subs) == counts {
            return t;
        }
    }
    let _g = BUILD.lock().unwrap_or_else(|e| e.into_inner());
    let t: &'static Objects = Box::leak(Box::new(build()));
    OBJECTS.store(t as *const Objects as *mut Objects, Ordering::Release);
    t
}

fn build() -> Objects {
    let mut objects = Vec::new();
    let mut counts = (0, 0);
    crate::sys::for_each_object(|info| {
        counts = (info.dlpi_adds, info.dlpi_subs);
        if let Some(o) = object_of(info) {
            objects.push(o);
        }
        true
    });
    Objects {
        objects,
        adds: counts.0,
        subs: counts.1,
    }
}

/// The executable's own unwind tables, built once by [`init_exe_tables`].
/// The main program is never unloaded, so unlike [`Objects`] they never go
/// stale: the preemption handler's precise walk (preempt/walk.rs) reads
/// them in signal context.
static EXE: OnceLock<Option<Object>> = OnceLock::new();

/// Builds the executable's unwind tables (allocates; never in signal
/// context). Idempotent.
pub(crate) fn init_exe_tables() {
    EXE.get_or_init(|| {
        let mut exe = None;
        crate::sys::for_each_object(|info| {
            exe = object_of(info);
            false // the first object is the executable
        });
        exe
    });
}

/// Signal context: the executable's unwind tables, if built and usable.
pub(crate) fn exe_tables() -> Option<&'static Object> {
    EXE.get()?.as_ref()
}

/// The unwind tables of the shared objects loaded when
/// [`init_pinned_tables`] ran (libc, ld.so, the vdso, the program's other
/// libraries), each pinned in memory for good, so that the preemption
/// handler may read them in signal context (preempt/hijack.rs).
static PINNED: OnceLock<Vec<Object>> = OnceLock::new();

/// Builds [`PINNED`] (allocates, calls `dlopen`; never in signal context).
/// Each named object is first made undeletable (`dlopen` with
/// `RTLD_NOLOAD | RTLD_NODELETE`: a later `dlclose` no longer unmaps it);
/// an object that cannot be pinned is left out. Idempotent.
pub(crate) fn init_pinned_tables() {
    PINNED.get_or_init(|| {
        let mut out = Vec::new();
        let mut first = true;
        crate::sys::for_each_object(|info| {
            let exe = std::mem::replace(&mut first, false);
            if exe {
                return true; // the executable: `exe_tables`
            }
            // SAFETY: glibc's info; dlpi_name is a C string or null.
            let named = !info.dlpi_name.is_null() && unsafe { *info.dlpi_name } != 0;
            if named {
                // SAFETY: a loaded object's own name; NOLOAD never loads,
                // NODELETE only marks it (the handle's reference is dropped
                // at once; the mark stays).
                let h = unsafe {
                    libc::dlopen(
                        info.dlpi_name,
                        libc::RTLD_NOLOAD | libc::RTLD_NODELETE | libc::RTLD_LAZY,
                    )
                };
                if h.is_null() {
                    return true;
                }
                // SAFETY: the handle dlopen just returned.
                unsafe { libc::dlclose(h) };
            }
            // Unnamed after the first: the vdso, never unmapped.
            if let Some(mut o) = object_of(info) {
                // SAFETY: as above.
                o.unwinder = named
                    && unsafe { std::ffi::CStr::from_ptr(info.dlpi_name) }
                        .to_bytes()
                        .windows(8)
                        .any(|w| w == b"libgcc_s");
                out.push(o);
            }
            true
        });
        out
    });
}

/// Signal context: the pinned tables of the shared object whose text holds
/// `pc`, if any.
pub(crate) fn pinned_tables_for(pc: u64) -> Option<&'static Object> {
    PINNED.get()?.iter().find(|o| o.holds(pc))
}

/// Signal context: the tables of the executable or a pinned object whose
/// text holds `pc`.
pub(crate) fn tables_for(pc: u64) -> Option<&'static Object> {
    match exe_tables() {
        Some(e) if e.holds(pc) => Some(e),
        _ => pinned_tables_for(pc),
    }
}

impl Object {
    /// Whether `pc` lies in this object's executable segments.
    pub(crate) fn holds(&self, pc: u64) -> bool {
        self.text.iter().any(|&(lo, hi)| lo <= pc && pc < hi)
    }

    /// Whether this is libgcc's unwinder (pinned objects only).
    pub(crate) fn is_unwinder(&self) -> bool {
        self.unwinder
    }
}

/// The unwind tables of the object `info` describes, if it has a
/// `.eh_frame_hdr` with a binary-search table.
fn object_of(info: &libc::dl_phdr_info) -> Option<Object> {
    let bias = info.dlpi_addr;
    let mut text = Vec::new();
    let mut loads = Vec::new();
    let mut hdr_seg = None;
    for i in 0..info.dlpi_phnum as usize {
        // SAFETY: glibc's info has `dlpi_phnum` program headers.
        let ph = unsafe { &*info.dlpi_phdr.add(i) };
        let lo = bias.wrapping_add(ph.p_vaddr);
        let hi = lo.wrapping_add(ph.p_memsz);
        if ph.p_type == libc::PT_LOAD {
            loads.push((lo, hi));
            if ph.p_flags & libc::PF_X != 0 {
                text.push((lo, hi));
            }
        } else if ph.p_type == libc::PT_GNU_EH_FRAME {
            hdr_seg = Some((lo, hi));
        }
    }
    hdr_seg.and_then(|h| parse_object(h, &loads, text))
}

/// Parses an object's `.eh_frame_hdr` at `[lo, hi)`; `.eh_frame` extends
/// to the end of the `PT_LOAD` segment holding its start.
fn parse_object(
    (lo, hi): (u64, u64),
    loads: &[(u64, u64)],
    text: Vec<(u64, u64)>,
) -> Option<Object> {
    if hi <= lo || !loads.iter().any(|&(a, b)| a <= lo && hi <= b) {
        return None;
    }
    // SAFETY: the segment lies in a loaded PT_LOAD segment of an object
    // that stays mapped until dlclose (module doc: the dlclose race).
    let hdr_bytes: &'static [u8] =
        unsafe { std::slice::from_raw_parts(lo as *const u8, (hi - lo) as usize) };
    let bases = BaseAddresses::default().set_eh_frame_hdr(lo);
    let hdr = EhFrameHdr::new(hdr_bytes, LittleEndian)
        .parse(&bases, 8)
        .ok()?;
    let gimli::Pointer::Direct(eh) = hdr.eh_frame_ptr() else {
        return None;
    };
    let &(_, end) = loads.iter().find(|&&(a, b)| a <= eh && eh < b)?;
    // SAFETY: as above: [eh, end) is the rest of a loaded segment.
    let eh_bytes: &'static [u8] =
        unsafe { std::slice::from_raw_parts(eh as *const u8, (end - eh) as usize) };
    let mut eh_frame = EhFrame::new(eh_bytes, LittleEndian);
    eh_frame.set_address_size(8);
    hdr.table()?; // no binary-search table: skip the object
    Some(Object {
        text,
        unwinder: false,
        bases: bases.set_eh_frame(eh),
        eh_frame,
        hdr,
    })
}

thread_local! {
    /// gimli's evaluation state (a few hundred bytes of heap), per thread.
    static CTX: Cell<Option<Box<UnwindContext<usize>>>> = const { Cell::new(None) };
}

/// Walks the stack from `regs`: the program counters, innermost first
/// (`regs.rip`, then return addresses; symbolize a return address at
/// `pc - 1`). Empty if `rip` is unknown. At most `max_frames`.
pub(crate) fn unwind(regs: Regs, mem: &dyn Memory, max_frames: usize) -> Vec<u64> {
    let mut out = Vec::new();
    let Some(rip) = regs.rip else {
        return out;
    };
    if rip == 0 || max_frames == 0 {
        return out;
    }
    out.push(rip);
    let objs = objects();
    let mut ctx = CTX
        .with(|c| c.take())
        .unwrap_or_else(|| Box::new(UnwindContext::new()));
    let mut regs = regs;
    let mut first = true;
    while out.len() < max_frames {
        match step(objs, &mut ctx, &regs, mem, first) {
            Some(next) => {
                let ra = next.rip.unwrap_or(0);
                if ra == 0 {
                    break;
                }
                out.push(ra);
                regs = next;
                first = false;
            }
            None => break,
        }
    }
    CTX.with(|c| c.set(Some(ctx)));
    out
}

/// One unwind step: the caller's registers, or None to stop.
fn step(
    objs: &Objects,
    ctx: &mut UnwindContext<usize>,
    regs: &Regs,
    mem: &dyn Memory,
    first: bool,
) -> Option<Regs> {
    let lookup = lookup_pc(regs, first)?;
    let obj = objs
        .objects
        .iter()
        .find(|o| o.text.iter().any(|&(lo, hi)| lo <= lookup && lookup < hi))?;
    step_in(obj, ctx, regs, mem, first)
}

/// The address whose unwind row applies to the frame of `regs`: the pc
/// itself for the innermost frame, else the return address minus one (the
/// call may be the last instruction of its function, a `noreturn` callee).
pub(crate) fn lookup_pc(regs: &Regs, first: bool) -> Option<u64> {
    let pc = regs.rip?;
    if first {
        Some(pc)
    } else {
        pc.checked_sub(1)
    }
}

/// One unwind step with the tables of `obj`, which must hold the frame's
/// lookup pc. Allocation- and lock-free when `S` stores in line (the
/// preemption handler's walk, preempt/walk.rs): gimli's parsing and CFI
/// evaluation only read the mapped tables and `ctx`.
pub(crate) fn step_in<S: UnwindContextStorage<usize>>(
    obj: &Object,
    ctx: &mut UnwindContext<usize, S>,
    regs: &Regs,
    mem: &dyn Memory,
    first: bool,
) -> Option<Regs> {
    step_in_slot(obj, ctx, regs, mem, first).map(|(r, _)| r)
}

/// [`step_in`], also returning where the frame's return address is stored
/// (its stack slot), when the CFI says it is at an offset from the CFA.
pub(crate) fn step_in_slot<S: UnwindContextStorage<usize>>(
    obj: &Object,
    ctx: &mut UnwindContext<usize, S>,
    regs: &Regs,
    mem: &dyn Memory,
    first: bool,
) -> Option<(Regs, Option<u64>)> {
    let lookup = lookup_pc(regs, first)?;
    let rsp = regs.rsp?;
    let table = obj.hdr.table()?;
    let fde = table
        .fde_for_address(&obj.eh_frame, &obj.bases, lookup, EhFrame::cie_from_offset)
        .ok()?;
    let row = fde
        .unwind_info_for_address(&obj.eh_frame, &obj.bases, ctx, lookup)
        .ok()?;
    let cfa = match row.cfa() {
        CfaRule::RegisterAndOffset { register, offset } => {
            regs.get(*register)?.checked_add_signed(*offset)?
        }
        CfaRule::Expression(_) => return None,
    };
    let rule = |r: Register| -> Option<u64> {
        match row.register(r) {
            // Callee-saved registers without a rule keep their value.
            RegisterRule::Undefined if r != X86_64::RA => regs.get(r),
            RegisterRule::Undefined => None,
            RegisterRule::SameValue => regs.get(r),
            RegisterRule::Offset(n) => mem.read_u64(cfa.checked_add_signed(n)?),
            RegisterRule::ValOffset(n) => cfa.checked_add_signed(n),
            RegisterRule::Register(s) => regs.get(s),
            RegisterRule::Constant(v) => Some(v),
            _ => None,
        }
    };
    let ra = rule(X86_64::RA)?;
    let slot = match row.register(X86_64::RA) {
        RegisterRule::Offset(n) => cfa.checked_add_signed(n),
        _ => None,
    };
    let next = Regs {
        rip: Some(ra),
        rsp: Some(cfa),
        rbp: rule(X86_64::RBP),
        rbx: rule(X86_64::RBX),
        r12: rule(X86_64::R12),
        r13: rule(X86_64::R13),
        r14: rule(X86_64::R14),
        r15: rule(X86_64::R15),
    };
    if cfa <= rsp {
        return None; // the stack pointer must grow towards the base
    }
    Some((next, slot))
}

/// The registers of a suspended coroutine whose saved stack pointer is
/// `sp` (arch::SwitchFrame; resumed as a preempted one through the save
/// area of preempt/ucontext.rs right above the frame). A never-run
/// coroutine (return address `coroutines_entry`) gets `rip: None`, so its
/// backtrace is empty.
///
/// # Safety
/// `sp` must be the saved stack pointer of a suspended coroutine whose
/// stack stays mapped and which is not resumed while this runs.
// Used by `coroutines::dump()` (issue #12), and by the tests.
pub(crate) unsafe fn regs_of_suspended(sp: usize) -> Regs {
    // SAFETY: caller contract: a suspended frame at `sp`.
    let f = unsafe { (sp as *const arch::SwitchFrame).read() };
    if f.ret == arch::entry_addr() as u64 {
        return Regs::default();
    }
    if f.ret == arch::coroutines_restore_full as *const () as usize as u64 {
        // SAFETY: a preempted coroutine's frame lies right below its save
        // area (preempt/signal.rs writes both; resume.S reads them).
        let sa =
            unsafe { &*((sp + arch::FRAME_SIZE) as *const crate::preempt::ucontext::SaveArea) };
        return Regs {
            rip: Some(sa.rip),
            rsp: Some(sa.rsp),
            rbp: Some(sa.rbp),
            rbx: Some(sa.rbx),
            r12: Some(sa.r12),
            r13: Some(sa.r13),
            r14: Some(sa.r14),
            r15: Some(sa.r15),
        };
    }
    Regs {
        rip: Some(f.ret),
        rsp: Some((sp + arch::FRAME_SIZE) as u64),
        rbp: Some(f.rbp),
        rbx: Some(f.rbx),
        r12: Some(f.r12),
        r13: Some(f.r13),
        r14: Some(f.r14),
        r15: Some(f.r15),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The calling thread's stack bounds (pthread_getattr_np).
    fn own_stack() -> (u64, u64) {
        // SAFETY: attr is initialised by pthread_getattr_np before use and
        // destroyed after; the out-pointers are valid locals.
        unsafe {
            let mut attr: libc::pthread_attr_t = std::mem::zeroed();
            assert_eq!(libc::pthread_getattr_np(libc::pthread_self(), &mut attr), 0);
            let mut addr = std::ptr::null_mut();
            let mut size = 0usize;
            assert_eq!(libc::pthread_attr_getstack(&attr, &mut addr, &mut size), 0);
            libc::pthread_attr_destroy(&mut attr);
            (addr as u64, addr as u64 + size as u64)
        }
    }

    /// The registers at this point of the caller (rip = a label in here,
    /// inlined into the caller, so the innermost frame is the caller's).
    #[inline(always)]
    fn capture() -> Regs {
        let (rip, rsp, rbp, rbx, r12, r13, r14, r15): (u64, u64, u64, u64, u64, u64, u64, u64);
        // SAFETY: only reads registers and a RIP-relative address.
        unsafe {
            std::arch::asm!(
                "lea {rip}, [rip]",
                "mov {rsp}, rsp",
                "mov {rbp}, rbp",
                "mov {rbx}, rbx",
                "mov {r12}, r12",
                "mov {r13}, r13",
                "mov {r14}, r14",
                "mov {r15}, r15",
                rip = out(reg) rip,
                rsp = out(reg) rsp,
                rbp = out(reg) rbp,
                rbx = out(reg) rbx,
                r12 = out(reg) r12,
                r13 = out(reg) r13,
                r14 = out(reg) r14,
                r15 = out(reg) r15,
                options(nomem, nostack, preserves_flags),
            );
        }
        Regs {
            rip: Some(rip),
            rsp: Some(rsp),
            rbp: Some(rbp),
            rbx: Some(rbx),
            r12: Some(r12),
            r13: Some(r13),
            r14: Some(r14),
            r15: Some(r15),
        }
    }

    #[inline(never)]
    fn unwind_test_c() -> Vec<u64> {
        let regs = capture();
        let (lo, hi) = own_stack();
        let v = unwind(regs, &StackMemory { lo, hi }, 64);
        std::hint::black_box(v)
    }

    #[inline(never)]
    fn unwind_test_b() -> Vec<u64> {
        std::hint::black_box(unwind_test_c())
    }

    #[inline(never)]
    fn unwind_test_a() -> Vec<u64> {
        std::hint::black_box(unwind_test_b())
    }

    fn names(pcs: &[u64]) -> Vec<String> {
        crate::observe::symbol::symbolize(pcs)
            .into_iter()
            .map(|f| f.symbol.unwrap_or_default())
            .collect()
    }

    /// Works without debug info: only `.eh_frame` (always there with
    /// panic = "unwind") and `.symtab` are used.
    #[test]
    fn unwinds_own_thread_from_captured_registers() {
        let pcs = unwind_test_a();
        assert!(pcs.len() >= 4, "{pcs:x?}");
        let n = names(&pcs);
        let pos = |f: &str| {
            n.iter()
                .position(|s| s.ends_with(f))
                .unwrap_or_else(|| panic!("{f} not in {n:#?}"))
        };
        let (a, b, c) = (
            pos("unwind_test_a"),
            pos("unwind_test_b"),
            pos("unwind_test_c"),
        );
        assert!(c < b && b < a, "{n:#?}");
        assert_eq!(c, 0, "{n:#?}");
        // The walk reaches the test harness above us.
        assert!(n.len() > a + 1, "{n:#?}");
    }

    struct Sides {
        sched_sp: usize,
        co_sp: usize,
    }

    #[inline(never)]
    fn suspended_test_inner(st: *mut Sides) {
        // SAFETY: the test keeps `Sides` alive; one side runs at a time.
        let r = unsafe { arch::switch(&mut (*st).co_sp, (*st).sched_sp, 1, 0) };
        std::hint::black_box(r); // not a tail call: this frame stays
    }

    #[inline(never)]
    fn suspended_test_outer(st: *mut Sides) {
        suspended_test_inner(st);
        std::hint::black_box(st);
    }

    unsafe extern "C" fn suspended_test_entry(arg: usize, _first: usize) -> ! {
        let st = arg as *mut Sides;
        loop {
            suspended_test_outer(st);
        }
    }

    /// A context suspended by `arch::switch` on a stack of its own (the
    /// way a parked coroutine is), and a never-run one.
    #[test]
    fn unwinds_a_suspended_context() {
        let mut stack = vec![0u8; 64 * 1024];
        let lo = stack.as_mut_ptr() as usize;
        let top = (lo + stack.len()) & !15;
        let mut st = Sides {
            sched_sp: 0,
            co_sp: 0,
        };
        // SAFETY: `stack` and `st` outlive every switch below.
        st.co_sp =
            unsafe { arch::init_stack(top, suspended_test_entry, &mut st as *mut Sides as usize) };
        // SAFETY: a fresh frame, not resumed while read.
        let fresh = unsafe { regs_of_suspended(st.co_sp) };
        assert_eq!(unwind(fresh, &StackMemory { lo: 0, hi: 0 }, 64), vec![]);
        let co = st.co_sp;
        // SAFETY: `co` is a suspended frame on `stack`, resumed once.
        unsafe { arch::switch(&mut st.sched_sp, co, 0, 0) };
        // SAFETY: suspended in suspended_test_inner; not resumed while read.
        let regs = unsafe { regs_of_suspended(st.co_sp) };
        let mem = StackMemory {
            lo: lo as u64,
            hi: top as u64,
        };
        let n = names(&unwind(regs, &mem, 64));
        let pos = |f: &str| n.iter().position(|s| s.ends_with(f));
        let inner = pos("suspended_test_inner").unwrap_or_else(|| panic!("{n:#?}"));
        let outer = pos("suspended_test_outer").unwrap_or_else(|| panic!("{n:#?}"));
        assert!(inner < outer, "{n:#?}");
        assert!(
            pos("suspended_test_entry").is_some_and(|e| e > outer),
            "{n:#?}"
        );
    }

    #[test]
    fn proc_memory_reads_and_faults_safely() {
        let x: u64 = 0x1234_5678_9abc_def0;
        let m = ProcMemory::new(None);
        assert_eq!(m.read_u64(&x as *const u64 as u64), Some(x));
        assert_eq!(m.read_u64(8), None);
        assert_eq!(m.read_u64(u64::MAX - 4), None);
        let c = CopyMemory {
            base: 0x1000,
            bytes: vec![1, 0, 0, 0, 0, 0, 0, 0, 2],
        };
        assert_eq!(c.read_u64(0x1000), Some(1));
        assert_eq!(c.read_u64(0x1002), None);
        assert_eq!(c.read_u64(0xfff), None);
    }

    #[test]
    fn unwind_from_copy_matches_direct() {
        let regs = capture();
        let (lo, hi) = own_stack();
        let direct = unwind(regs, &StackMemory { lo, hi }, 64);
        let sp = regs.rsp.unwrap();
        let mut bytes = vec![0u8; (hi - sp) as usize];
        let n = read_own(sp, &mut bytes);
        bytes.truncate(n);
        let copied = unwind(regs, &CopyMemory { base: sp, bytes }, 64);
        assert_eq!(direct, copied);
        let proc_ = unwind(regs, &ProcMemory::new(None), 64);
        assert_eq!(direct, proc_);
    }
}
