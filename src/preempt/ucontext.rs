//! The kernel's signal context (`ucontext_t`) and the save area that
//! `asm/x86_64/resume.S` restores from.
//!
//! Owns: reading GPRs/RIP/RSP/RFLAGS and the FP/SIMD image out of a
//! `ucontext_t`, the layout of the save area (mirror of the `SA_*` constants
//! in resume.S, checked at compile time), and the edits that land a
//! returning signal handler in the scheduler. Everything here runs in signal
//! context.

use std::mem::offset_of;

/// Red zone of the System V x86-64 ABI, never touched below a live RSP.
pub(crate) const RED_ZONE: usize = 128;
/// Bytes below the red zone where resume.S places RFLAGS and RIP.
pub(crate) const TARGET_SLOTS: usize = 16;

/// `FP_XSTATE_MAGIC1`: the kernel's marker in the fxsave image's reserved
/// bytes (offset 464) saying an xsave image follows.
const FP_XSTATE_MAGIC1: u32 = 0x4650_5853;
/// `FP_XSTATE_MAGIC2`: written right after the xsave image.
const FP_XSTATE_MAGIC2: u32 = 0x4650_5845;
/// Offset of `_fpx_sw_bytes` inside the 512-byte legacy region.
const SW_BYTES_OFFSET: usize = 464;
/// Size of the legacy fxsave image.
pub(crate) const FXSAVE_BYTES: usize = 512;
/// Offset of the XSAVE header (XSTATE_BV first) in an xsave image.
const XSAVE_HEADER_OFFSET: usize = 512;
/// XSTATE_BV bit of the PKRU component (kept when we reset the image).
const XFEATURE_PKRU: u64 = 1 << 9;
/// Largest image we accept (AVX-512 needs ~2.7 KiB; AMX would need 11 KiB
/// and is refused with a deferral rather than copied).
pub(crate) const MAX_XSTATE_BYTES: usize = 4096;

/// Header of the save area; the FP/SIMD image follows at `xsave`.
/// Mirror of resume.S (`SA_*`).
#[repr(C, align(64))]
pub(crate) struct SaveArea {
    pub(crate) rax: u64,
    pub(crate) rbx: u64,
    pub(crate) rcx: u64,
    pub(crate) rdx: u64,
    pub(crate) rsi: u64,
    pub(crate) rdi: u64,
    pub(crate) rbp: u64,
    pub(crate) r8: u64,
    pub(crate) r9: u64,
    pub(crate) r10: u64,
    pub(crate) r11: u64,
    pub(crate) r12: u64,
    pub(crate) r13: u64,
    pub(crate) r14: u64,
    pub(crate) r15: u64,
    pub(crate) rip: u64,
    pub(crate) rflags: u64,
    pub(crate) rsp: u64,
    /// Feature mask for xrstor (EDX:EAX); 0 = fxsave image.
    pub(crate) xmask: u64,
    /// Scratch for resume.S (RSP0 - 0x90).
    pub(crate) target: u64,
    _pad: [u64; 4],
}

/// Offset of the FP/SIMD image from the save area (resume.S `SA_XSAVE`).
pub(crate) const SA_XSAVE: usize = 0xC0;

const _: () = assert!(offset_of!(SaveArea, rax) == 0x00);
const _: () = assert!(offset_of!(SaveArea, rbp) == 0x30);
const _: () = assert!(offset_of!(SaveArea, r8) == 0x38);
const _: () = assert!(offset_of!(SaveArea, r15) == 0x70);
const _: () = assert!(offset_of!(SaveArea, rip) == 0x78);
const _: () = assert!(offset_of!(SaveArea, rflags) == 0x80);
const _: () = assert!(offset_of!(SaveArea, rsp) == 0x88);
const _: () = assert!(offset_of!(SaveArea, xmask) == 0x90);
const _: () = assert!(offset_of!(SaveArea, target) == 0x98);
const _: () = assert!(std::mem::size_of::<SaveArea>() == SA_XSAVE);

/// The FP/SIMD image the kernel put in the signal frame.
pub(crate) struct FpImage {
    pub(crate) ptr: *mut u8,
    /// Bytes to copy (the whole xsave image, or 512 for fxsave-only).
    pub(crate) len: usize,
    /// xrstor mask, 0 for a legacy image.
    pub(crate) mask: u64,
}

/// Signal context: the interrupted general registers.
pub(crate) struct Regs<'a> {
    gregs: &'a mut [i64; 23],
}

/// Signal context: view of the registers of `uc`.
///
/// # Safety
/// `uc` must be the `ucontext_t` the kernel passed to an SA_SIGINFO handler
/// that is still running.
pub(crate) unsafe fn regs<'a>(uc: *mut libc::c_void) -> Regs<'a> {
    let uc = uc as *mut libc::ucontext_t;
    Regs {
        // SAFETY: caller contract (`uc` is the live kernel ucontext of the
        // running handler); gregs is [greg_t; 23] = [i64; 23].
        gregs: unsafe { &mut (*uc).uc_mcontext.gregs },
    }
}

impl Regs<'_> {
    /// Signal context: the interrupted RIP.
    pub(crate) fn rip(&self) -> usize {
        self.gregs[libc::REG_RIP as usize] as usize
    }
    /// Signal context: the interrupted RSP.
    pub(crate) fn rsp(&self) -> usize {
        self.gregs[libc::REG_RSP as usize] as usize
    }

    /// Signal context: the registers an unwind step reads (RIP, RSP and the
    /// callee-saved ones), for the precise stack walk (walk.rs).
    pub(crate) fn unwind_regs(&self) -> crate::observe::unwind::Regs {
        let g = |r: libc::c_int| Some(self.gregs[r as usize] as u64);
        crate::observe::unwind::Regs {
            rip: g(libc::REG_RIP),
            rsp: g(libc::REG_RSP),
            rbp: g(libc::REG_RBP),
            rbx: g(libc::REG_RBX),
            r12: g(libc::REG_R12),
            r13: g(libc::REG_R13),
            r14: g(libc::REG_R14),
            r15: g(libc::REG_R15),
        }
    }

    /// Signal context: copies every GPR, RIP, RSP and RFLAGS into `sa`.
    pub(crate) fn save_into(&self, sa: &mut SaveArea) {
        let g = |r: libc::c_int| self.gregs[r as usize] as u64;
        sa.rax = g(libc::REG_RAX);
        sa.rbx = g(libc::REG_RBX);
        sa.rcx = g(libc::REG_RCX);
        sa.rdx = g(libc::REG_RDX);
        sa.rsi = g(libc::REG_RSI);
        sa.rdi = g(libc::REG_RDI);
        sa.rbp = g(libc::REG_RBP);
        sa.r8 = g(libc::REG_R8);
        sa.r9 = g(libc::REG_R9);
        sa.r10 = g(libc::REG_R10);
        sa.r11 = g(libc::REG_R11);
        sa.r12 = g(libc::REG_R12);
        sa.r13 = g(libc::REG_R13);
        sa.r14 = g(libc::REG_R14);
        sa.r15 = g(libc::REG_R15);
        sa.rip = g(libc::REG_RIP);
        sa.rflags = g(libc::REG_EFL);
        sa.rsp = g(libc::REG_RSP);
        sa.target = 0;
    }

    /// Signal context: makes the handler's return land at `rip` with stack
    /// `rsp`, RDI = `rdi` (the landing code's argument) and the direction
    /// flag clear (the ABI state at a call boundary).
    pub(crate) fn redirect(&mut self, rip: usize, rsp: usize, rdi: usize) {
        self.gregs[libc::REG_RDI as usize] = rdi as i64;
        self.gregs[libc::REG_RIP as usize] = rip as i64;
        self.gregs[libc::REG_RSP as usize] = rsp as i64;
        self.gregs[libc::REG_EFL as usize] &= !0x400;
    }
}

/// Signal context: the FP/SIMD image of `uc`, or None if it is missing or
/// malformed (then the caller defers).
///
/// # Safety
/// As for [`regs`].
pub(crate) unsafe fn fp_image(uc: *mut libc::c_void) -> Option<FpImage> {
    let uc = uc as *mut libc::ucontext_t;
    // SAFETY: caller contract.
    let fp = unsafe { (*uc).uc_mcontext.fpregs } as *mut u8;
    if fp.is_null() {
        return None;
    }
    // SAFETY: the kernel's image has at least the 512-byte legacy region,
    // whose bytes 464..512 hold `_fpx_sw_bytes`:
    // magic1 u32, extended_size u32, xfeatures u64, xstate_size u32.
    unsafe {
        let sw = fp.add(SW_BYTES_OFFSET);
        let magic1 = (sw as *const u32).read_unaligned();
        if magic1 != FP_XSTATE_MAGIC1 {
            return Some(FpImage {
                ptr: fp,
                len: FXSAVE_BYTES,
                mask: 0,
            });
        }
        let xfeatures = (sw.add(8) as *const u64).read_unaligned();
        let xstate_size = (sw.add(16) as *const u32).read_unaligned() as usize;
        if !(FXSAVE_BYTES + 64..=MAX_XSTATE_BYTES).contains(&xstate_size) || xfeatures == 0 {
            return None;
        }
        let magic2 = (fp.add(xstate_size) as *const u32).read_unaligned();
        if magic2 != FP_XSTATE_MAGIC2 {
            return None;
        }
        Some(FpImage {
            ptr: fp,
            len: xstate_size,
            mask: xfeatures,
        })
    }
}

impl FpImage {
    /// Signal context: MXCSR and x87 control word, packed as a switch
    /// frame's control word.
    pub(crate) fn ctrl_word(&self) -> u64 {
        // SAFETY: fxsave layout: FCW at 0 (u16), MXCSR at 24 (u32); the
        // image is at least 512 bytes (checked by `fp_image`).
        unsafe {
            let fcw = (self.ptr as *const u16).read_unaligned() as u64;
            let mxcsr = (self.ptr.add(24) as *const u32).read_unaligned() as u64;
            mxcsr | (fcw << 32)
        }
    }

    /// Signal context: resets the image the kernel will load on sigreturn to the init state
    /// (x87 stack empty, vector registers zero, no dirty AVX upper halves)
    /// so the scheduler we land in starts clean. PKRU is left as it is.
    /// MXCSR stays in the legacy region and the scheduler's own switch frame
    /// reloads its MXCSR and x87 control word anyway.
    pub(crate) fn reset_for_scheduler(&self) {
        if self.mask == 0 {
            return;
        }
        // SAFETY: an xsave image (mask != 0) has its 64-byte header at 512.
        unsafe {
            let bv = self.ptr.add(XSAVE_HEADER_OFFSET) as *mut u64;
            bv.write_unaligned(bv.read_unaligned() & XFEATURE_PKRU);
        }
    }
}

#[cfg(test)]
mod tests {
    //! The FP-image parser on synthetic kernel images: a plain fxsave
    //! image, a well-formed xsave image, and each malformation the handler
    //! must refuse (then it defers instead of copying garbage).
    use super::*;

    /// A zeroed `ucontext_t` whose `fpregs` points at `img`.
    fn uc_with(img: &mut [u8]) -> Box<libc::ucontext_t> {
        // SAFETY: ucontext_t is plain data; all-zero is a valid value.
        let mut uc: Box<libc::ucontext_t> = Box::new(unsafe { std::mem::zeroed() });
        uc.uc_mcontext.fpregs = img.as_mut_ptr() as *mut libc::_libc_fpstate;
        uc
    }

    /// An xsave image of `size` bytes (plus the trailing magic2), with the
    /// software bytes filled in as the kernel does.
    fn xsave_image(size: usize, xfeatures: u64) -> Vec<u8> {
        let mut img = vec![0u8; (size + 4).max(XSAVE_HEADER_OFFSET + 64)];
        img[0..2].copy_from_slice(&0x037fu16.to_le_bytes()); // FCW
        img[24..28].copy_from_slice(&0x1f80u32.to_le_bytes()); // MXCSR
        let sw = SW_BYTES_OFFSET;
        img[sw..sw + 4].copy_from_slice(&FP_XSTATE_MAGIC1.to_le_bytes());
        img[sw + 4..sw + 8].copy_from_slice(&((size + 4) as u32).to_le_bytes());
        img[sw + 8..sw + 16].copy_from_slice(&xfeatures.to_le_bytes());
        img[sw + 16..sw + 20].copy_from_slice(&(size as u32).to_le_bytes());
        img[size..size + 4].copy_from_slice(&FP_XSTATE_MAGIC2.to_le_bytes());
        // XSTATE_BV: x87, SSE, AVX and PKRU in use.
        img[XSAVE_HEADER_OFFSET..XSAVE_HEADER_OFFSET + 8]
            .copy_from_slice(&(0b111u64 | XFEATURE_PKRU).to_le_bytes());
        img
    }

    fn parse(img: &mut [u8]) -> Option<(usize, u64, u64)> {
        let mut uc = uc_with(img);
        // SAFETY: `uc` and the image it points at are alive and writable.
        unsafe { fp_image(&mut *uc as *mut libc::ucontext_t as *mut libc::c_void) }
            .map(|f| (f.len, f.mask, f.ctrl_word()))
    }

    #[test]
    fn legacy_fxsave_image() {
        let mut img = vec![0u8; FXSAVE_BYTES];
        img[0..2].copy_from_slice(&0x027fu16.to_le_bytes());
        img[24..28].copy_from_slice(&0x1f80u32.to_le_bytes());
        assert_eq!(
            parse(&mut img),
            Some((FXSAVE_BYTES, 0, 0x1f80 | (0x027f << 32)))
        );
    }

    #[test]
    fn xsave_image_and_reset() {
        let mut img = xsave_image(832, 0x207);
        assert_eq!(parse(&mut img), Some((832, 0x207, 0x1f80 | (0x037f << 32))));
        let mut uc = uc_with(&mut img);
        // SAFETY: as in `parse`.
        let f = unsafe { fp_image(&mut *uc as *mut libc::ucontext_t as *mut libc::c_void) }
            .expect("well-formed");
        f.reset_for_scheduler();
        let bv = u64::from_le_bytes(img[512..520].try_into().unwrap());
        assert_eq!(bv, XFEATURE_PKRU, "only PKRU survives the reset");
    }

    #[test]
    fn malformed_images_are_refused() {
        // SAFETY: ucontext_t is plain C data; all-zero is a valid value.
        let mut no_fp: Box<libc::ucontext_t> = Box::new(unsafe { std::mem::zeroed() });
        let uc = &mut *no_fp as *mut libc::ucontext_t as *mut libc::c_void;
        // SAFETY: a zeroed context: fpregs is null, which fp_image checks.
        let image = unsafe { fp_image(uc) };
        assert!(image.is_none());
        // Size too small, too large (AMX-sized), zero features, bad magic2.
        for (size, feats, break_magic2) in [
            (FXSAVE_BYTES, 0x7, false),
            (MAX_XSTATE_BYTES + 64, 0x7, false),
            (832, 0, false),
            (832, 0x7, true),
        ] {
            let mut img = xsave_image(size, feats);
            if break_magic2 {
                img[size] ^= 0xff;
            }
            assert_eq!(parse(&mut img), None, "size {size} feats {feats:#x}");
        }
    }
}
