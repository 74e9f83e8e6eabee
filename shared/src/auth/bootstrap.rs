//! The first admin key: a deployment secret, `ADMIN_API_KEY` or a file named
//! by `ADMIN_API_KEY_FILE` (Docker and Kubernetes secrets are files). It is
//! stored (hashed) at start if it is not already, so the deployment can
//! create creator keys with it. Required outside `PLATFORM_ENV=dev`; in dev
//! the native stack supplies one and writes it to `.stack/admin-key`.

use anyhow::Context;

use super::keys::{ApiKey, KeyStore};
use super::Role;
use crate::configuration::{Env, Secret};

#[derive(Debug, Clone, Default)]
pub struct BootstrapSettings {
    pub key: Option<Secret>,
    pub file: Option<std::path::PathBuf>,
}

impl BootstrapSettings {
    pub fn from_env(env: &mut Env) -> Self {
        let dev = env.is_dev();
        let key: Option<Secret> = env.maybe("ADMIN_API_KEY", "the first admin API key (vpk_ + 43 base64url characters); stored hashed at start");
        let file: Option<std::path::PathBuf> = env.maybe("ADMIN_API_KEY_FILE", "a file holding the first admin API key, instead of ADMIN_API_KEY");
        if key.is_none() && file.is_none() && !dev {
            env.invalid("ADMIN_API_KEY or ADMIN_API_KEY_FILE must be set outside PLATFORM_ENV=dev (scripts/compose-env makes one; see .env.example)");
        }
        if let Some(k) = &key {
            if ApiKey::parse(k.expose()).is_none() {
                env.invalid("ADMIN_API_KEY is not a key: vpk_ followed by 43 base64url characters (32 bytes)");
            }
        }
        Self { key, file }
    }

    /// Stores the configured key, if any.
    pub async fn apply(&self, keys: &KeyStore) -> anyhow::Result<()> {
        let raw = match (&self.key, &self.file) {
            (Some(k), _) => k.expose().to_owned(),
            (None, Some(f)) => std::fs::read_to_string(f).with_context(|| format!("reading ADMIN_API_KEY_FILE {}", f.display()))?.trim().to_owned(),
            (None, None) => return Ok(()),
        };
        let key = ApiKey::parse(&raw).context("the admin key is not vpk_ followed by 43 base64url characters")?;
        if keys.ensure(&key, Role::Admin, "bootstrap").await? {
            tracing::info!(prefix = key.prefix(), "stored the bootstrap admin key");
        }
        Ok(())
    }
}
