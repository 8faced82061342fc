//! The configuration error: why a value (from the environment or the
//! builder) was refused, or why the runtime could not start. Split from
//! config.rs, which holds the builder and says how values are resolved;
//! the parsing and range checks are in config/parse.rs.

use std::fmt;
/// Why a configuration was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigError {
    /// The runtime already runs; its configuration is fixed for the life of
    /// the process.
    AlreadyStarted,
    /// A value was out of range or malformed.
    Invalid {
        /// Where the value came from: an environment variable name or a
        /// builder method such as `RuntimeBuilder::workers`.
        source: &'static str,
        /// The offending value, as given.
        value: String,
        /// What would have been accepted, and how to fix it.
        expected: &'static str,
    },
    /// The libc hooks (I/O, sleep, getaddrinfo interposers) are not what
    /// this binary's calls reach; the runtime refuses to start because
    /// blocking calls would block executors.
    HooksNotLinked(String),
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::AlreadyStarted => f.write_str(
                "the coroutines runtime has already started; configure it (RuntimeBuilder::start) \
                 before the first spawn",
            ),
            ConfigError::Invalid {
                source,
                value,
                expected,
            } => {
                write!(f, "{source}={value:?} is not valid: expected {expected}")
            }
            ConfigError::HooksNotLinked(why) => write!(f, "coroutines cannot start: {why}"),
        }
    }
}

impl std::error::Error for ConfigError {}

impl From<ConfigError> for std::io::Error {
    fn from(e: ConfigError) -> Self {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, e.to_string())
    }
}
