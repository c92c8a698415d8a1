//! API tokens and WebSocket tickets as strings: how they are made and the
//! one-way form in which they are stored.
//!
//! Tokens and tickets are random strings shown to their owner once; only
//! their SHA-256 is stored, so a copy of the database holds no usable
//! credential. A 256-bit random secret needs no slow password hash: nobody
//! can guess it, so hashing only has to be one-way.
//!
//! A leaf module: it imports nothing of this crate, so both [`crate::store`]
//! (which writes hashes) and [`crate::auth`] (which checks them) can use it
//! without importing each other.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::Rng as _;
use sha2::{Digest as _, Sha256};

/// Prefix of API tokens, so that a leaked one is recognisable.
pub const TOKEN_PREFIX: &str = "vct_";
/// Prefix of WebSocket tickets.
pub const TICKET_PREFIX: &str = "vcw_";

/// A fresh random credential: `prefix` + 32 random bytes in base64url.
pub fn new_secret(prefix: &str) -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill(&mut bytes);
    format!("{prefix}{}", URL_SAFE_NO_PAD.encode(bytes))
}

/// The stored form of a token or ticket.
pub fn hash_secret(secret: &str) -> Vec<u8> {
    Sha256::digest(secret.as_bytes()).to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_random_and_hash_stably() {
        let a = new_secret(TOKEN_PREFIX);
        let b = new_secret(TOKEN_PREFIX);
        assert_ne!(a, b);
        assert!(a.starts_with(TOKEN_PREFIX));
        assert_eq!(a.len(), TOKEN_PREFIX.len() + 43);
        assert_eq!(hash_secret(&a), hash_secret(&a));
        assert_ne!(hash_secret(&a), hash_secret(&b));
    }
}
