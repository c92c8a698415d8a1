//! Integration tests of the wire types: the original plan's examples, every refusal,
//! and round-trips of generated payloads.

mod invalid;
mod plan_examples;
mod request;
mod roundtrip;
