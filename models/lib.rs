//! loom models of the `coroutines` runtime's cross-thread protocols. The
//! models are in `tests/protocols.rs`; this crate has no code of its own.
//! See that file's top comment for what is modelled and how each model
//! maps to the runtime's source.
