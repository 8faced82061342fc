//! Placeholder until the unwinder lands (observe/unwind.rs on its branch).
#![allow(dead_code)]

pub(crate) struct Regs {
    pub(crate) rip: u64,
    pub(crate) rsp: u64,
}

pub(crate) trait Memory {
    fn read_u64(&self, addr: u64) -> Option<u64>;
}

pub(crate) struct StackMemory {
    pub(crate) lo: usize,
    pub(crate) hi: usize,
}

impl Memory for StackMemory {
    fn read_u64(&self, _addr: u64) -> Option<u64> {
        None
    }
}

pub(crate) fn regs_of_suspended(sp: usize) -> Regs {
    Regs {
        rip: 0,
        rsp: sp as u64,
    }
}

pub(crate) fn unwind(_regs: Regs, _mem: &dyn Memory, _max: usize) -> Vec<u64> {
    Vec::new()
}
