//! Shared test support: the high-precision reference and the accuracy harness, used by
//! `tests/stability.rs` and `examples/accuracy.rs` (which includes this folder by path).
#![allow(dead_code)]

pub mod harness;
pub mod reference;
