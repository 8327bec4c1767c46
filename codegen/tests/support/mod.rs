//! Shared by the generator's property tests: the workspace's proptest runner.
// Each test crate uses a part of this module.
#![allow(dead_code)]

#[path = "../../../tests/support/proptest_runner.rs"]
mod runner;
pub(crate) use runner::*;
