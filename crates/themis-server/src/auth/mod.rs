//! Authentication and authorisation: who a connection is, and what it may do.
//!
//! * [`roles`]: roles per database and the superuser; [`Roles::allows`] is the one
//!   permission check every opcode goes through.
//! * [`jwt`]: JWT verification (HS256, RS256, ES256; `exp`, `nbf`, `iss`, `aud`).
//! * [`apikey`]: API keys: generated, shown once, stored hashed, revocable.
//! * [`certificate`]: the username a client certificate names (mTLS login).
//! * [`throttle`]: growing delays for failed logins, per address and per username.
//! * [`ratelimit`]: a token bucket per principal.

pub mod apikey;
pub mod certificate;
pub mod jwt;
pub mod ratelimit;
pub mod roles;
pub mod throttle;

pub use roles::{Permission, Role, Roles};
