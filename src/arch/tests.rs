use super::*;

struct Shared {
    sched_sp: usize,
    co_sp: usize,
    sum: u64,
}

unsafe extern "C" fn entry(arg: usize, first: usize) -> ! {
    let st = arg as *mut Shared;
    let mut got = first;
    loop {
        // SAFETY: the test keeps `Shared` alive while the coroutine runs,
        // and only one side runs at a time.
        unsafe {
            (*st).sum += got as u64;
            // A rounding-mode change must not leak into the other side.
            std::arch::asm!(
                "sub rsp, 8",
                "stmxcsr [rsp]",
                "or dword ptr [rsp], 0x6000",
                "ldmxcsr [rsp]",
                "add rsp, 8"
            );
            got = switch(&mut (*st).co_sp, (*st).sched_sp, 1, 0);
        }
    }
}

fn mxcsr() -> u32 {
    let mut v = 0u32;
    // SAFETY: stmxcsr writes 4 bytes to a valid local.
    unsafe { std::arch::asm!("stmxcsr [{}]", in(reg) &mut v) };
    v
}

#[test]
fn smoke_switch_round_trips() {
    let mut stack = vec![0u8; 64 * 1024];
    let top = (stack.as_mut_ptr() as usize + stack.len()) & !15;
    let mut st = Shared {
        sched_sp: 0,
        co_sp: 0,
        sum: 0,
    };
    let before = mxcsr();
    // SAFETY: `stack` and `st` outlive every switch below.
    st.co_sp = unsafe { init_stack(top, entry, &mut st as *mut Shared as usize) };
    for i in 0..1000usize {
        let co = st.co_sp;
        // SAFETY: `co` is a suspended frame on `stack`, resumed once.
        let r = unsafe { switch(&mut st.sched_sp, co, 10 + i, 0) };
        assert_eq!(r, 1);
        assert_eq!(mxcsr(), before, "MXCSR leaked from the coroutine");
    }
    let expected: u64 = (0..1000u64).map(|i| 10 + i).sum();
    assert_eq!(st.sum, expected);
}
