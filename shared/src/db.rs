//! PostgreSQL: pool construction and migrations.
//!
//! Migrations are embedded at compile time and applied at every start.
//! sqlx holds a PostgreSQL advisory lock while migrating, so several services
//! starting at once apply each migration exactly once; an already-applied
//! migration whose file changed fails start-up rather than drifting silently.

use std::time::Duration;

use anyhow::Context;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::PgPool;

use crate::configuration::{Env, Secret};

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations");

#[derive(Debug, Clone, Default)]
pub struct DatabaseSettings {
    pub url: Secret,
    pub max_connections: u32,
}

impl DatabaseSettings {
    pub fn from_env(env: &mut Env) -> Self {
        Self {
            url: env.required("DATABASE_URL", "PostgreSQL URL, e.g. postgres://postgres@127.0.0.1:5432/videos"),
            max_connections: env.optional("DATABASE_MAX_CONNECTIONS", "10", "connection pool size"),
        }
    }

    pub fn connect_options(&self) -> anyhow::Result<PgConnectOptions> {
        self.url.expose().parse().context("DATABASE_URL is not a valid PostgreSQL URL")
    }

    /// Connects lazily: the pool is usable at once and readiness reports an outage.
    pub fn pool(&self) -> anyhow::Result<PgPool> {
        Ok(PgPoolOptions::new()
            .max_connections(self.max_connections)
            .acquire_timeout(Duration::from_secs(5))
            .connect_lazy_with(self.connect_options()?))
    }
}

/// Applies pending migrations; safe to call from several processes at once.
pub async fn migrate(pool: &PgPool) -> anyhow::Result<()> {
    MIGRATOR.run(pool).await.context("applying database migrations")
}
