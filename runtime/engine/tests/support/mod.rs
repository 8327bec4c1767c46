//! Shared by the engine's property tests: the workspace's proptest runner and the engine's
//! value strategies.
// Each test crate uses a part of this module.
#![allow(dead_code)]

#[path = "../../../../tests/support/proptest_runner.rs"]
mod runner;
pub(crate) use runner::*;

pub(crate) mod strategies;
