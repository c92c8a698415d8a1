//! Integration tests of clipping-worker: real HTTP on loopback, a verifying
//! receiver on port 0, and real processes where the test is about processes.

mod delivery;
mod engine;
mod events;
mod helpers;
mod intake;
mod openapi;
mod process;
mod receiver_example;
mod storage;
