//! The fd state machine: what the runtime knows about one fd number (its
//! `Kind`), the facts recorded beside it (`Flags`), and the readiness
//! directions (`Dir`, `Dirs`). The types live here, the storage (atomics
//! of a `Registration`) in registration.rs, the transitions are made by
//! the lazy init (interpose/io.rs), `reset` and the creating hooks.
//!
//! ## Kind (what the fd is)
//! | kind      | meaning                                                  | hooks do            |
//! |-----------|----------------------------------------------------------|---------------------|
//! | `Unknown` | never used by a coroutine since it was (re)created        | lazy init in a coroutine |
//! | `Init`    | one coroutine is running the lazy init (fstat, fcntl, epoll_ctl) | others spin    |
//! | `Poll`    | socket or FIFO: kernel O_NONBLOCK set, registered in epoll (ET) | park on EAGAIN |
//! | `File`    | regular file                                              | preadv2(RWF_NOWAIT), else offload |
//! | `Pass`    | anything else (tty, /dev/*, eventfd, epoll fd, fd 0-2, /proc & /sys files) | plain blocking call (the poll family may add `WATCHED`) |
//!
//! Transitions: `Unknown -> Init -> {Poll, File, Pass}`, only by the
//! thread that won the CAS (`begin_init`, then `finish_init`): the lazy
//! init of a coroutine's first call on the fd (interpose/io.rs `ensure`),
//! a socket the runtime just created or accepted from a coroutine (kind
//! known, no fstat), a pidfd (interpose/wait.rs), the reactor's own fds
//! (`Pass`); `Init -> Unknown` when that init finds the fd closed or
//! cannot register it; any kind `-> Unknown` by `reset` (close, dup2 over
//! it, or the fd number being handed out again by socket/accept/pipe/dup,
//! which proves the previous file is gone). `reset` bumps the generation
//! and clears the flags.
//!
//! ## Flags (facts about the fd, any kind)
//! `USER_NONBLOCK` is the user's own O_NONBLOCK view when the kernel flag
//! is the runtime's (`Poll`, or `INHERITED`); `INHERITED` marks a number
//! sharing a `Poll` fd's description (dup); `SOCKET` and `STREAM` are set
//! by the lazy init; `NO_NOWAIT` is learnt by the first RWF_NOWAIT try on
//! a `File`; `WATCHED` marks a `Pass` fd the poll family added to the
//! reactor's epoll for readiness only. Flags change with Relaxed RMWs
//! (`set_flag`); those set by the lazy init are published by its Release
//! store of the kind.

/// What the fd is (module doc); stored as its `u8` in an `AtomicU8`.
#[repr(u8)]
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Kind {
    Unknown = 0,
    Init = 1,
    Poll = 2,
    File = 3,
    Pass = 4,
}

impl Kind {
    /// The kind stored as `v` (only `Kind as u8` values are ever stored;
    /// anything else reads as `Unknown`, which the next use re-initialises).
    #[inline]
    pub(crate) fn from_u8(v: u8) -> Kind {
        match v {
            1 => Kind::Init,
            2 => Kind::Poll,
            3 => Kind::File,
            4 => Kind::Pass,
            _ => Kind::Unknown,
        }
    }
}

/// A set of facts about an fd (module doc); stored as its `u8`.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub(crate) struct Flags(u8);

impl Flags {
    pub(crate) const NONE: Flags = Flags(0);
    /// The user's own view of O_NONBLOCK (fcntl/ioctl/SOCK_NONBLOCK).
    pub(crate) const USER_NONBLOCK: Flags = Flags(1);
    /// The fd shares a file description with a `Poll` fd (dup): the
    /// kernel's O_NONBLOCK was set by the runtime, `USER_NONBLOCK` holds
    /// the user view.
    pub(crate) const INHERITED: Flags = Flags(2);
    /// It is a socket (SO_RCVTIMEO/SO_SNDTIMEO apply).
    pub(crate) const SOCKET: Flags = Flags(4);
    /// preadv2/pwritev2 with RWF_NOWAIT is not supported on this file.
    pub(crate) const NO_NOWAIT: Flags = Flags(8);
    /// A byte stream (SOCK_STREAM socket, pipe/FIFO): a read that returns
    /// less than asked for drained the kernel buffer at that moment.
    pub(crate) const STREAM: Flags = Flags(16);
    /// A `Pass` fd added to the reactor's epoll for readiness only
    /// (registration.rs, "Watched fds").
    pub(crate) const WATCHED: Flags = Flags(32);

    #[inline]
    pub(crate) const fn bits(self) -> u8 {
        self.0
    }

    #[inline]
    pub(crate) const fn from_bits(b: u8) -> Flags {
        Flags(b)
    }

    /// Whether every flag of `f` is set.
    #[inline]
    pub(crate) const fn contains(self, f: Flags) -> bool {
        self.0 & f.0 == f.0
    }

    #[inline]
    pub(crate) const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// `self` restricted to the flags of `f`.
    #[inline]
    pub(crate) const fn and(self, f: Flags) -> Flags {
        Flags(self.0 & f.0)
    }

    /// `f` if `on`, else no flag.
    #[inline]
    pub(crate) const fn when(f: Flags, on: bool) -> Flags {
        if on {
            f
        } else {
            Flags::NONE
        }
    }
}

impl std::ops::BitOr for Flags {
    type Output = Flags;
    #[inline]
    fn bitor(self, o: Flags) -> Flags {
        Flags(self.0 | o.0)
    }
}

impl std::ops::BitOrAssign for Flags {
    #[inline]
    fn bitor_assign(&mut self, o: Flags) {
        self.0 |= o.0;
    }
}

/// Readiness direction.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Dir {
    Read,
    Write,
}

/// A set of directions, for [`Registration::notify`](super::registration::Registration::notify).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub(crate) struct Dirs(u8);

impl Dirs {
    pub(crate) const NONE: Dirs = Dirs(0);
    pub(crate) const READ: Dirs = Dirs(1);
    pub(crate) const WRITE: Dirs = Dirs(2);

    #[inline]
    pub(crate) const fn contains(self, d: Dirs) -> bool {
        self.0 & d.0 == d.0
    }
}

impl std::ops::BitOrAssign for Dirs {
    #[inline]
    fn bitor_assign(&mut self, o: Dirs) {
        self.0 |= o.0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kind_round_trips() {
        for k in [
            Kind::Unknown,
            Kind::Init,
            Kind::Poll,
            Kind::File,
            Kind::Pass,
        ] {
            assert_eq!(Kind::from_u8(k as u8), k);
        }
        assert_eq!(Kind::from_u8(200), Kind::Unknown);
    }

    #[test]
    fn flags_are_distinct_bits() {
        let all = [
            Flags::USER_NONBLOCK,
            Flags::INHERITED,
            Flags::SOCKET,
            Flags::NO_NOWAIT,
            Flags::STREAM,
            Flags::WATCHED,
        ];
        let mut acc = Flags::NONE;
        for f in all {
            assert_eq!(f.bits().count_ones(), 1);
            assert!(acc.and(f).is_empty());
            acc |= f;
            assert!(acc.contains(f));
        }
        assert_eq!(
            acc.and(Flags::SOCKET | Flags::STREAM),
            Flags::SOCKET | Flags::STREAM
        );
        assert_eq!(Flags::when(Flags::STREAM, false), Flags::NONE);
    }
}
