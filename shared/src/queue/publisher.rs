//! The confirmed publisher: persistent, mandatory, and a publish returns only
//! once the broker has confirmed it, over one lazily (re)opened channel.

use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::publisher_confirm::Confirmation;
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection};
use tokio::sync::Mutex;

use super::job::TranscodeJob;
use super::topology::{Topology, JOB_ROUTING_KEY};
use super::{AmqpHeaders, QueueSettings};

/// Where a message goes.
#[derive(Debug, Clone, Copy)]
enum Target {
    Jobs,
    /// A retry, held back this long.
    Delay(Duration),
    Dead,
}

pub struct Publisher {
    settings: QueueSettings,
    topology: Topology,
    state: Mutex<Option<(Connection, Channel)>>,
}

impl Publisher {
    pub fn new(settings: QueueSettings) -> Self {
        let topology = settings.names();
        Self { settings, topology, state: Mutex::new(None) }
    }

    pub fn topology(&self) -> &Topology {
        &self.topology
    }

    /// Enqueues a job for the workers.
    pub async fn publish(&self, job: &TranscodeJob) -> anyhow::Result<()> {
        self.send(job, Target::Jobs).await
    }

    /// Enqueues a retry that reaches the workers after `delay`.
    pub async fn publish_retry(&self, job: &TranscodeJob, delay: Duration) -> anyhow::Result<()> {
        self.send(job, Target::Delay(delay)).await
    }

    /// Puts a job in the dead-letter queue.
    pub async fn publish_dead(&self, job: &TranscodeJob) -> anyhow::Result<()> {
        self.send(job, Target::Dead).await
    }

    /// One retry on a fresh connection covers a broker restart since the last publish.
    async fn send(&self, job: &TranscodeJob, target: Target) -> anyhow::Result<()> {
        let payload = serde_json::to_vec(job)?;
        let mut headers = FieldTable::default();
        crate::telemetry::inject_current(&mut AmqpHeaders(&mut headers));
        let props = BasicProperties::default()
            .with_delivery_mode(2)
            .with_content_type("application/json".into())
            .with_message_id(job.job_id.to_string().into())
            .with_priority(job.priority.min(super::MAX_PRIORITY))
            .with_timestamp(time::OffsetDateTime::now_utc().unix_timestamp() as u64)
            .with_headers(headers);
        let mut last_err = None;
        for _ in 0..2 {
            let ch = match self.channel().await {
                Ok(ch) => ch,
                Err(e) => {
                    last_err = Some(e);
                    continue;
                }
            };
            match self.publish_on(&ch, target, &payload, props.clone()).await {
                Ok(()) => return Ok(()),
                Err(e) => {
                    *self.state.lock().await = None;
                    last_err = Some(e);
                }
            }
        }
        Err(last_err.unwrap_or_else(|| anyhow!("publish failed")))
    }

    async fn publish_on(&self, ch: &Channel, target: Target, payload: &[u8], props: BasicProperties) -> anyhow::Result<()> {
        let t = &self.topology;
        let (exchange, key) = match target {
            Target::Jobs => (t.exchange.as_str(), JOB_ROUTING_KEY.to_owned()),
            Target::Delay(d) => (t.delay_exchange.as_str(), t.declare_delay(ch, d).await?),
            Target::Dead => (t.dead_letter_exchange.as_str(), JOB_ROUTING_KEY.to_owned()),
        };
        let opts = BasicPublishOptions { mandatory: true, ..Default::default() };
        let confirm = tokio::time::timeout(Duration::from_secs(10), async {
            ch.basic_publish(exchange, &key, opts, payload, props).await?.await
        })
        .await
        .context("timed out waiting for the broker's publisher confirm")??;
        match confirm {
            Confirmation::Ack(None) => Ok(()),
            Confirmation::Ack(Some(_)) => bail!("broker returned the message as unroutable: nothing is bound to {exchange}/{key}"),
            Confirmation::Nack(_) => bail!("broker refused the message (nack)"),
            Confirmation::NotRequested => bail!("publisher confirms are not enabled on this channel"),
        }
    }

    /// An open channel in confirm mode, connecting and declaring if needed.
    pub async fn channel(&self) -> anyhow::Result<Channel> {
        let mut state = self.state.lock().await;
        if let Some((conn, ch)) = state.as_ref() {
            if conn.status().connected() && ch.status().connected() {
                return Ok(ch.clone());
            }
        }
        let conn = self.settings.connect().await?;
        let ch = conn.create_channel().await?;
        ch.confirm_select(ConfirmSelectOptions::default()).await?;
        self.topology.declare(&ch).await?;
        *state = Some((conn, ch.clone()));
        Ok(ch)
    }
}
