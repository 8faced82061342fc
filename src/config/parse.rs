//! Parsing and range checks of configuration values: sizes and durations
//! with mandatory units, the C preemption allow-list, the accepted forms
//! quoted in every [`ConfigError::Invalid`], and reading one environment
//! variable. Split from config.rs (the builder, which resolves each knob
//! from the builder, then the environment, then the default, through these
//! functions); the error type is in config/error.rs.

use std::time::Duration;

use super::{ConfigError, DEFAULT_PREEMPT_C, MAX_STACK_SIZE, MAX_WORKERS, MIN_STACK_SIZE};

pub(super) const WORKERS_FORMS: &str = "a whole number of executors from 1 to 1024, e.g. 4";
pub(super) const MAX_WORKERS_FORMS: &str =
    "a whole number from 1 to 1024, at least the number of workers (e.g. 64)";
pub(super) const SIZE_FORMS: &str =
    "a size with a unit between 16K and 1G, e.g. 64K, 256K, 2M (K/KB/KiB = 1024 bytes)";
pub(super) const SLICE_FORMS: &str =
    "a duration with a unit between 50us and 10s, e.g. 500us, 2ms, 1s, or `off`";
pub(super) const BLOCKED_FORMS: &str = "a duration with a unit between 1ms and 60s, e.g. 20ms, 1s";
pub(super) const FILE_HELPERS_FORMS: &str =
    "a whole number of helper threads from 1 to 1024, e.g. 16";
pub(super) const TRACE_FORMS: &str =
    "a duration with a unit between 1ms and 1h, e.g. 200ms, 1s, or `off`";
pub(super) const TRACE_FILE_FORMS: &str = "a path of a file to write (created or replaced)";
pub(super) const BOOL_FORMS: &str = "1, 0, true or false";
pub(super) const DUMP_SIGNAL_FORMS: &str =
    "a signal name: SIGQUIT, SIGUSR1, SIGUSR2, SIGHUP, SIGWINCH, SIGTTIN, SIGTTOU, SIGPWR (with or without the SIG prefix), or `off`";

/// Parses a dump signal name (`COROUTINES_DUMP_SIGNAL`): None for `off`,
/// Err for anything else than the signals in [`DUMP_SIGNAL_FORMS`] (the
/// runtime's own SIGURG, fatal and job-control-stopping signals cannot be
/// used).
pub(super) fn parse_dump_signal(v: &str) -> Result<Option<i32>, ()> {
    let t = v.trim().to_ascii_uppercase();
    let name = t.strip_prefix("SIG").unwrap_or(&t);
    Ok(Some(match name {
        "OFF" | "" if t != "SIG" => return Ok(None),
        "QUIT" => libc::SIGQUIT,
        "USR1" => libc::SIGUSR1,
        "USR2" => libc::SIGUSR2,
        "HUP" => libc::SIGHUP,
        "WINCH" => libc::SIGWINCH,
        "TTIN" => libc::SIGTTIN,
        "TTOU" => libc::SIGTTOU,
        "PWR" => libc::SIGPWR,
        _ => return Err(()),
    }))
}
pub(super) const MALLOC_FORMS: &str = "`own-when-preempted` (a preempted coroutine gets a glibc malloc cache and arena of its own until it parks) or `executor` (coroutines always use their executor's)";
pub(super) const TLS_FORMS: &str = "`coroutine` (each coroutine has its own thread-locals) or `shared` (coroutines of one executor share them)";
pub(super) const PREEMPT_C_FORMS: &str = "comma-separated C symbol-name prefixes (letters, digits and _, not \
     starting with a digit), added to the defaults, e.g. my_hash_,blake3_; a first item `none` drops \
     the defaults (zlib)";

/// Parses an allow-list (`COROUTINES_PREEMPT_C`, `RuntimeBuilder::preempt_c`):
/// items are C identifiers used as prefixes; `none` as the first item drops
/// the defaults. Returns the resolved list (defaults first).
pub(super) fn parse_preempt_c<'a>(items: impl IntoIterator<Item = &'a str>) -> Option<Vec<String>> {
    let mut out: Vec<String> = DEFAULT_PREEMPT_C.iter().map(|s| s.to_string()).collect();
    for (i, item) in items.into_iter().enumerate() {
        let item = item.trim();
        if item == "none" {
            if i != 0 {
                return None;
            }
            out.clear();
            continue;
        }
        let ok = item
            .bytes()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == b'_')
            && item.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_');
        if !ok {
            return None;
        }
        if !out.iter().any(|p| p == item) {
            out.push(item.to_string());
        }
    }
    Some(out)
}

pub(super) fn invalid(source: &'static str, value: &str, expected: &'static str) -> ConfigError {
    ConfigError::Invalid {
        source,
        value: value.to_string(),
        expected,
    }
}

/// Parses a size with a mandatory unit: `256K`, `2M`, `1G`, `64KiB`, `4096B`.
pub fn parse_size(s: &str) -> Option<usize> {
    let s = s.trim();
    let digits = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    if digits == 0 || digits == s.len() {
        return None;
    }
    let n: usize = s[..digits].parse().ok()?;
    let mult = match s[digits..].trim() {
        "B" | "b" => 1,
        "K" | "k" | "KB" | "kB" | "KiB" | "kb" => 1 << 10,
        "M" | "m" | "MB" | "MiB" | "mb" => 1 << 20,
        "G" | "g" | "GB" | "GiB" | "gb" => 1 << 30,
        _ => return None,
    };
    n.checked_mul(mult)
}

/// Parses a duration with a mandatory unit: `500us`, `2ms`, `1s`, `100ns`.
/// A bare number is refused: a slice of "1" could mean anything.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let digits = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    if digits == 0 || digits == s.len() {
        return None;
    }
    let n: u64 = s[..digits].parse().ok()?;
    match s[digits..].trim() {
        "ns" => Some(Duration::from_nanos(n)),
        "us" | "µs" => Some(Duration::from_micros(n)),
        "ms" => Some(Duration::from_millis(n)),
        "s" => Some(Duration::from_secs(n)),
        _ => None,
    }
}

pub(super) fn check_workers(
    source: &'static str,
    n: usize,
    raw: &str,
) -> Result<usize, ConfigError> {
    if (1..=MAX_WORKERS).contains(&n) {
        Ok(n)
    } else {
        Err(invalid(source, raw, WORKERS_FORMS))
    }
}

pub(super) fn check_stack(source: &'static str, n: usize, raw: &str) -> Result<usize, ConfigError> {
    if (MIN_STACK_SIZE..=MAX_STACK_SIZE).contains(&n) {
        Ok(n)
    } else {
        Err(invalid(source, raw, SIZE_FORMS))
    }
}

pub(super) fn check_slice(
    source: &'static str,
    d: Duration,
    raw: &str,
) -> Result<Duration, ConfigError> {
    if d >= Duration::from_micros(50) && d <= Duration::from_secs(10) {
        Ok(d)
    } else {
        Err(invalid(source, raw, SLICE_FORMS))
    }
}

pub(super) fn check_blocked(
    source: &'static str,
    d: Duration,
    raw: &str,
) -> Result<Duration, ConfigError> {
    if d >= Duration::from_millis(1) && d <= Duration::from_secs(60) {
        Ok(d)
    } else {
        Err(invalid(source, raw, BLOCKED_FORMS))
    }
}

pub(super) fn check_trace(
    source: &'static str,
    d: Duration,
    raw: &str,
) -> Result<Duration, ConfigError> {
    if d >= Duration::from_millis(1) && d <= Duration::from_secs(3600) {
        Ok(d)
    } else {
        Err(invalid(source, raw, TRACE_FORMS))
    }
}

/// Validates a per-coroutine stack size given to `Builder::stack_size`.
pub(crate) fn check_coroutine_stack(n: usize) -> Result<usize, ConfigError> {
    check_stack("Builder::stack_size", n, &n.to_string())
}

/// Reads one environment variable; `Ok(None)` when unset. A value that is not
/// valid UTF-8 is refused, not ignored.
pub(super) fn env_var(
    name: &'static str,
    expected: &'static str,
) -> Result<Option<String>, ConfigError> {
    match std::env::var(name) {
        Ok(v) => Ok(Some(v)),
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(v)) => {
            Err(invalid(name, &v.to_string_lossy(), expected))
        }
    }
}
