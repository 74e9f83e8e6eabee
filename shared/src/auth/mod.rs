//! Who is calling, and what they may touch.
//!
//! - [`keys`]: API keys (32 random bytes, shown once, stored as a SHA-256
//!   hash), their principals and roles, in PostgreSQL.
//! - [`layer`]: the one layer every service authenticates with, and the
//!   [`Caller`] extractor handlers ask for.
//! - [`routes`]: `POST/GET /api/v1/keys`, `DELETE /api/v1/keys/{id}`.
//! - [`bootstrap`]: the first admin key, from a deployment secret.
//!
//! The rules every creator operation follows are here once:
//! [`Principal::may_act_on`] (owner or admin) and [`hidden`] (another
//! creator's resource answers 404, never 403, so its existence does not leak).

pub mod bootstrap;
pub mod keys;
pub mod layer;
pub mod routes;

use std::fmt;
use std::str::FromStr;

use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::Problem;

pub use keys::{ApiKey, KeyInfo, KeyStore};
pub use layer::{authenticate, AuthSettings, Authenticator, Caller, Denied};

/// What a principal may do: creators act on their own videos and uploads,
/// admins on everything (and on keys and operator surfaces).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Creator,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Creator => "creator",
            Role::Admin => "admin",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "creator" => Ok(Role::Creator),
            "admin" => Ok(Role::Admin),
            other => Err(format!("unknown role {other:?} (creator or admin)")),
        }
    }
}

/// An authenticated caller: the principal and the key it used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub id: Uuid,
    pub role: Role,
    pub key_id: Uuid,
}

impl Principal {
    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }

    /// Owner or admin. A row without an owner (from before owners existed)
    /// belongs to the admins alone.
    pub fn may_act_on(&self, owner: Option<Uuid>) -> bool {
        self.is_admin() || owner == Some(self.id)
    }
}

/// The answer for a resource the caller may not see: the same 404 as for one
/// that does not exist, so ids cannot be probed. `what` is "video", "upload"…
pub fn hidden(what: &str, code: &str) -> Problem {
    Problem::new(StatusCode::NOT_FOUND, code, &format!("{} not found", capitalise(what)), format!("No {what} with this id is visible to this API key."))
}

fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    c.next().map(|f| f.to_uppercase().chain(c).collect()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owners_and_admins_may_act_and_ownerless_rows_are_admin_only() {
        let (me, other) = (Uuid::new_v4(), Uuid::new_v4());
        let creator = Principal { id: me, role: Role::Creator, key_id: Uuid::new_v4() };
        let admin = Principal { id: other, role: Role::Admin, key_id: Uuid::new_v4() };
        assert!(creator.may_act_on(Some(me)));
        assert!(!creator.may_act_on(Some(other)));
        assert!(!creator.may_act_on(None));
        assert!(admin.may_act_on(Some(me)) && admin.may_act_on(None));
        assert_eq!("admin".parse::<Role>().unwrap(), Role::Admin);
        assert!("root".parse::<Role>().is_err());
        assert_eq!(hidden("video", "video-not-found").status, 404);
    }
}
