//! Who is calling: the bearer token of a request and the [`AuthUser`]
//! extractor. How tokens and tickets are made and hashed lives in the leaf
//! module [`crate::token`], re-exported here.

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use uuid::Uuid;

use crate::AppState;
use crate::error::Error;
use crate::store;
pub use crate::token::{TICKET_PREFIX, TOKEN_PREFIX, hash_secret, new_secret};

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
