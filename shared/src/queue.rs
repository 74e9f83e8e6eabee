//! RabbitMQ: the topology, the job message and the confirmed publisher.
//!
//! Topology (all durable, names under AMQP_PREFIX so tests can isolate):
//!
//! ```text
//!  {p}.transcode (direct) --"transcode"--> {p}.transcode.jobs --(reject)--> {p}.dlx (direct) --> {p}.transcode.dead
//! ```
//!
//! Every publish is persistent, mandatory and waits for the broker's confirm:
//! a 201 to a creator means the job is on disk in the broker, not in a buffer.

use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use lapin::options::{
    BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::publisher_confirm::Confirmation;
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use tokio::sync::Mutex;
use uuid::Uuid;

use crate::configuration::{Env, Secret};

pub const JOB_ROUTING_KEY: &str = "transcode";

#[derive(Debug, Clone, Default)]
pub struct QueueSettings {
    pub url: Secret,
    pub prefix: String,
}

impl QueueSettings {
    pub fn from_env(env: &mut Env) -> Self {
        Self {
            url: env.required("AMQP_URL", "RabbitMQ URL, e.g. amqp://guest:guest@127.0.0.1:5672/%2f"),
            prefix: env.optional("AMQP_PREFIX", "video", "prefix of every exchange and queue name"),
        }
    }

    pub fn names(&self) -> Topology {
        Topology::new(&self.prefix)
    }

    pub async fn connect(&self) -> anyhow::Result<Connection> {
        let props = ConnectionProperties::default()
            .with_executor(tokio_executor_trait::Tokio::current())
            .with_reactor(tokio_reactor_trait::Tokio);
        tokio::time::timeout(Duration::from_secs(10), Connection::connect(self.url.expose(), props))
            .await
            .context("timed out connecting to RabbitMQ")?
            .context("connecting to RabbitMQ")
    }
}

/// Exchange and queue names, derived from one prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topology {
    pub exchange: String,
    pub jobs_queue: String,
    pub dead_letter_exchange: String,
    pub dead_queue: String,
}

impl Topology {
    pub fn new(prefix: &str) -> Self {
        Self {
            exchange: format!("{prefix}.transcode"),
            jobs_queue: format!("{prefix}.transcode.jobs"),
            dead_letter_exchange: format!("{prefix}.dlx"),
            dead_queue: format!("{prefix}.transcode.dead"),
        }
    }

    /// Declares everything; idempotent, so every process does it at start.
    pub async fn declare(&self, ch: &Channel) -> anyhow::Result<()> {
        let durable_ex = ExchangeDeclareOptions { durable: true, ..Default::default() };
        let durable_q = QueueDeclareOptions { durable: true, ..Default::default() };
        ch.exchange_declare(&self.exchange, ExchangeKind::Direct, durable_ex, FieldTable::default()).await?;
        ch.exchange_declare(&self.dead_letter_exchange, ExchangeKind::Direct, durable_ex, FieldTable::default()).await?;
        let mut args = FieldTable::default();
        args.insert("x-dead-letter-exchange".into(), AMQPValue::LongString(self.dead_letter_exchange.as_str().into()));
        ch.queue_declare(&self.jobs_queue, durable_q, args).await?;
        ch.queue_declare(&self.dead_queue, durable_q, FieldTable::default()).await?;
        ch.queue_bind(&self.jobs_queue, &self.exchange, JOB_ROUTING_KEY, QueueBindOptions::default(), FieldTable::default())
            .await?;
        ch.queue_bind(&self.dead_queue, &self.dead_letter_exchange, JOB_ROUTING_KEY, QueueBindOptions::default(), FieldTable::default())
            .await?;
        Ok(())
    }
}

/// The versioned job message. A consumer rejects versions it does not know
/// instead of guessing, so a rolling upgrade cannot silently mis-handle jobs.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TranscodeJob {
    pub version: u32,
    pub job_id: Uuid,
    pub video_id: Uuid,
    pub source_key: String,
    pub attempt: u32,
    #[serde(with = "time::serde::rfc3339")]
    pub enqueued_at: OffsetDateTime,
}

impl TranscodeJob {
    pub const VERSION: u32 = 1;

    pub fn new(video_id: Uuid, source_key: String) -> Self {
        Self {
            version: Self::VERSION,
            job_id: Uuid::now_v7(),
            video_id,
            source_key,
            attempt: 1,
            enqueued_at: OffsetDateTime::now_utc(),
        }
    }

    pub fn decode(payload: &[u8]) -> anyhow::Result<Self> {
        let job: Self = serde_json::from_slice(payload).context("job message is not valid JSON of the expected shape")?;
        if job.version != Self::VERSION {
            bail!("job message version {} is not supported (expected {})", job.version, Self::VERSION);
        }
        Ok(job)
    }
}

/// Publishes with confirms over one lazily (re)opened channel.
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

    /// Publishes a job and waits for the broker's confirm. One retry on a
    /// fresh connection covers a broker restart since the last publish.
    pub async fn publish(&self, job: &TranscodeJob) -> anyhow::Result<()> {
        let payload = serde_json::to_vec(job)?;
        let mut headers = FieldTable::default();
        crate::telemetry::inject_current(&mut AmqpHeaders(&mut headers));
        let props = BasicProperties::default()
            .with_delivery_mode(2)
            .with_content_type("application/json".into())
            .with_message_id(job.job_id.to_string().into())
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
            match self.publish_on(&ch, &payload, props.clone()).await {
                Ok(()) => return Ok(()),
                Err(e) => {
                    *self.state.lock().await = None;
                    last_err = Some(e);
                }
            }
        }
        Err(last_err.unwrap_or_else(|| anyhow!("publish failed")))
    }

    async fn publish_on(&self, ch: &Channel, payload: &[u8], props: BasicProperties) -> anyhow::Result<()> {
        let opts = BasicPublishOptions { mandatory: true, ..Default::default() };
        let confirm = tokio::time::timeout(Duration::from_secs(10), async {
            ch.basic_publish(&self.topology.exchange, JOB_ROUTING_KEY, opts, payload, props).await?.await
        })
        .await
        .context("timed out waiting for the broker's publisher confirm")??;
        match confirm {
            Confirmation::Ack(None) => Ok(()),
            Confirmation::Ack(Some(_)) => bail!("broker returned the job as unroutable: is {} bound?", self.topology.jobs_queue),
            Confirmation::Nack(_) => bail!("broker refused the job (nack)"),
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

/// AMQP message headers as a trace-context carrier (write side).
pub struct AmqpHeaders<'a>(pub &'a mut FieldTable);

impl opentelemetry::propagation::Injector for AmqpHeaders<'_> {
    fn set(&mut self, key: &str, value: String) {
        self.0.insert(key.into(), AMQPValue::LongString(LongString::from(value)));
    }
}

/// AMQP message headers as a trace-context carrier (read side).
pub struct AmqpHeadersRef<'a>(pub &'a FieldTable);

impl opentelemetry::propagation::Extractor for AmqpHeadersRef<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        match self.0.inner().get(key)? {
            AMQPValue::LongString(s) => std::str::from_utf8(s.as_bytes()).ok(),
            _ => None,
        }
    }

    fn keys(&self) -> Vec<&str> {
        self.0.inner().keys().map(|k| k.as_str()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::propagation::{Extractor, Injector};

    #[test]
    fn job_round_trips_and_unknown_versions_are_refused() {
        let job = TranscodeJob::new(Uuid::now_v7(), "sources/x".into());
        let bytes = serde_json::to_vec(&job).unwrap();
        assert_eq!(TranscodeJob::decode(&bytes).unwrap(), job);
        let mut v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        v["version"] = 2.into();
        let err = TranscodeJob::decode(&serde_json::to_vec(&v).unwrap()).unwrap_err();
        assert!(err.to_string().contains("version 2"));
        assert!(TranscodeJob::decode(b"not json").is_err());
    }

    #[test]
    fn trace_headers_survive_an_amqp_field_table() {
        let mut table = FieldTable::default();
        AmqpHeaders(&mut table).set("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into());
        assert_eq!(
            AmqpHeadersRef(&table).get("traceparent"),
            Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
        );
        assert_eq!(AmqpHeadersRef(&table).keys(), ["traceparent"]);
    }

    #[test]
    fn topology_names_derive_from_the_prefix() {
        let t = Topology::new("t1");
        assert_eq!(t.jobs_queue, "t1.transcode.jobs");
        assert_eq!(t.dead_queue, "t1.transcode.dead");
    }
}
