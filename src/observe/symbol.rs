//! Placeholder until symbolization lands (observe/symbol.rs on its branch).
use std::fmt;

/// One frame of a backtrace.
#[derive(Clone, Debug)]
pub struct Frame {
    /// Program counter.
    pub ip: usize,
    /// Demangled symbol name.
    pub symbol: Option<String>,
    /// Offset into the symbol.
    pub offset: usize,
    /// Shared object file name, None for the executable.
    pub object: Option<String>,
}

impl fmt::Display for Frame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:#x} {}",
            self.ip,
            self.symbol.as_deref().unwrap_or("?")
        )
    }
}

pub(crate) fn symbolize(pcs: &[u64]) -> Vec<Frame> {
    pcs.iter()
        .map(|&ip| Frame {
            ip: ip as usize,
            symbol: None,
            offset: 0,
            object: None,
        })
        .collect()
}
