//! The four backing services that most services use — PostgreSQL, RabbitMQ,
//! S3 and Redis — configured, connected and health-probed together, so a
//! service's start-up is one call and every service starts the same way.

use std::sync::Arc;

use sqlx::PgPool;

use crate::cache::{Cache, RedisSettings};
use crate::configuration::Env;
use crate::db::DatabaseSettings;
use crate::health::Readiness;
use crate::queue::{Publisher, QueueSettings};
use crate::storage::{S3Settings, Storage};

#[derive(Debug, Clone, Default)]
pub struct BackendSettings {
    pub database: DatabaseSettings,
    pub queue: QueueSettings,
    pub s3: S3Settings,
    pub redis: RedisSettings,
}

impl BackendSettings {
    pub fn from_env(env: &mut Env) -> Self {
        Self {
            database: DatabaseSettings::from_env(env),
            queue: QueueSettings::from_env(env),
            s3: S3Settings::from_env(env),
            redis: RedisSettings::from_env(env),
        }
    }

    /// Migrates the database, creates the bucket if missing and declares the
    /// queue topology: a service that starts is a service whose world exists.
    pub async fn connect(&self) -> anyhow::Result<Backends> {
        let pool = self.database.pool()?;
        crate::db::migrate(&pool).await?;
        let storage = self.s3.store();
        storage.ensure_bucket().await?;
        let publisher = Arc::new(Publisher::new(self.queue.clone()));
        publisher.channel().await?;
        let cache = self.redis.cache()?;
        Ok(Backends { pool, storage, publisher, cache })
    }
}

/// Connected clients; cheap to clone.
#[derive(Clone)]
pub struct Backends {
    pub pool: PgPool,
    pub storage: Storage,
    pub publisher: Arc<Publisher>,
    pub cache: Cache,
}

impl Backends {
    /// Probes all four.
    pub fn readiness(&self) -> Readiness {
        Readiness::new().postgres(self.pool.clone()).rabbitmq(self.publisher.clone()).s3(self.storage.clone()).redis(self.cache.clone())
    }
}
