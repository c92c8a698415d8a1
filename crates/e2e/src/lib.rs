//! Support for the full-stack tests in `tests/it`: the services together, a
//! real browser, and the deployment files checked against the binaries.
//!
//! The crate ships nothing; it exists so that tests which span both services
//! have one home that depends on both, instead of one service's test suite
//! reaching into the other.

pub mod webdriver;
