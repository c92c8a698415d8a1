//! Who is calling: API tokens, WebSocket tickets and the [`AuthUser`]
//! extractor.
//!
//! Tokens and tickets are random strings shown to their owner once; only
//! their SHA-256 is stored, so a copy of the database holds no usable
//! credential. A 256-bit random secret needs no slow password hash: nobody
//! can guess it, so hashing only has to be one-way.

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::Rng as _;
use sha2::{Digest as _, Sha256};
use uuid::Uuid;

use crate::AppState;
use crate::error::Error;
use crate::store;

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

/// The bearer token of a request, if it has a well-formed one.
pub fn bearer(parts: &Parts) -> Option<&str> {
    let value = parts.headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// The authenticated user of a REST call. A missing or unknown token is a
/// 401 in the service's own error shape, never an anonymous caller.
#[derive(Debug, Clone, Copy)]
pub struct AuthUser(pub Uuid);

impl FromRequestParts<AppState> for AuthUser {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Error> {
        let token = bearer(parts).ok_or(Error::Unauthorized(
            "an Authorization: Bearer <token> header is required",
        ))?;
        match store::user_for_token(&state.pool, &hash_secret(token)).await? {
            Some(user) => Ok(AuthUser(user)),
            None => Err(Error::Unauthorized("the token is not valid")),
        }
    }
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
