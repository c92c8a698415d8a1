//! Integration tests of the wire types: the seed's examples, every refusal,
//! and round-trips of generated payloads.

mod invalid;
mod request;
mod roundtrip;
mod seed_examples;
