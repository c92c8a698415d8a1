//! Integration tests of clipping-worker.
