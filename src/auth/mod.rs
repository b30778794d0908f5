//! JWT authentication: who is calling.
//!
//! Every request to an API operation must carry `Authorization: Bearer
//! <JWT>` from one of the `[[auth.issuers]]`. The [`AuthenticateLayer`]
//! takes the token, the [`Authenticator`] verifies it (algorithm allow-list,
//! key by `kid` from the issuer's JWKS, signature, `exp`/`nbf`/`iat` with
//! leeway, exact `iss` and `aud`) and the resulting [`Principal`] travels
//! to the later layers in the request extensions. Failures are
//! [`crate::error::Error::Unauthenticated`].
//!
//! Modules, one concern each: [`config`] (`[auth]`), [`jwks`] (key sets),
//! [`source`] (JWKS file or URL, refresh), [`verify`] (token checks),
//! [`cache`] (verified tokens), [`layer`] (the middleware), [`keys`] and
//! [`mint`] (signing keys and tokens for tests and the demo), [`clock`].

mod authenticator;
pub mod cache;
pub mod clock;
pub mod config;
pub mod jwks;
pub mod keys;
pub mod layer;
pub mod mint;
mod principal;
pub mod source;
pub mod verify;

pub use authenticator::{AuthPlan, Authenticator, IssuersHaveKeys};
pub use config::AuthSection;
pub use layer::{Authenticate, AuthenticateLayer};
pub use principal::Principal;
