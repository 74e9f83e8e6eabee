//! Exchanges and queues, all durable, all named under one prefix so tests
//! can isolate themselves:
//!
//! ```text
//!                    ┌──────────── TTL expires: dead-lettered back ───────────┐
//!                    ▼                                                         │
//!  {p}.transcode ──"transcode"──▶ {p}.transcode.queue     {p}.transcode.delay ──"{ms}"──▶ {p}.transcode.delay.{ms}
//!   (direct)                     (priority 0..=9)           (direct; a retry waits here, one queue per delay)
//!                                     │ reject
//!                                     ▼
//!  {p}.dlx ──"transcode"──▶ {p}.transcode.dead   (given-up jobs, with their last error)
//! ```
//!
//! A retry waits in a queue whose TTL is its delay. One queue per delay (the
//! delay is in its name) rather than a per-message TTL, because RabbitMQ only
//! expires messages at the head of a queue: a 60 s retry in front would hold
//! back a 2 s one behind it.
//!
//! The jobs queue is `{p}.transcode.queue`, not the `{p}.transcode.jobs` of
//! earlier versions: RabbitMQ cannot add `x-max-priority` to an existing
//! queue (a redeclare fails with PRECONDITION_FAILED), so the priority queue
//! needed a new name. An old `{p}.transcode.jobs` keeps its binding and gets
//! a copy of every job: drain it with an old worker, then delete it.

use std::time::Duration;

use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Channel, ExchangeKind};

use super::job::MAX_PRIORITY;

pub const JOB_ROUTING_KEY: &str = "transcode";

/// Exchange and queue names, derived from one prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topology {
    pub exchange: String,
    pub jobs_queue: String,
    pub delay_exchange: String,
    pub dead_letter_exchange: String,
    pub dead_queue: String,
}

fn durable_exchange() -> ExchangeDeclareOptions {
    ExchangeDeclareOptions { durable: true, ..Default::default() }
}

fn durable_queue() -> QueueDeclareOptions {
    QueueDeclareOptions { durable: true, ..Default::default() }
}

impl Topology {
    pub fn new(prefix: &str) -> Self {
        Self {
            exchange: format!("{prefix}.transcode"),
            jobs_queue: format!("{prefix}.transcode.queue"),
            delay_exchange: format!("{prefix}.transcode.delay"),
            dead_letter_exchange: format!("{prefix}.dlx"),
            dead_queue: format!("{prefix}.transcode.dead"),
        }
    }

    /// The queue a retry delayed by `delay` waits in (whole milliseconds).
    pub fn delay_queue(&self, delay: Duration) -> String {
        format!("{}.{}", self.delay_exchange, delay.as_millis())
    }

    /// Declares everything but the delay queues; idempotent, so every
    /// process does it at start.
    pub async fn declare(&self, ch: &Channel) -> anyhow::Result<()> {
        for ex in [&self.exchange, &self.delay_exchange, &self.dead_letter_exchange] {
            ch.exchange_declare(ex, ExchangeKind::Direct, durable_exchange(), FieldTable::default()).await?;
        }
        let mut args = FieldTable::default();
        args.insert("x-dead-letter-exchange".into(), AMQPValue::LongString(self.dead_letter_exchange.as_str().into()));
        args.insert("x-max-priority".into(), AMQPValue::LongInt(MAX_PRIORITY as i32));
        ch.queue_declare(&self.jobs_queue, durable_queue(), args).await?;
        ch.queue_declare(&self.dead_queue, durable_queue(), FieldTable::default()).await?;
        let bind = QueueBindOptions::default();
        ch.queue_bind(&self.jobs_queue, &self.exchange, JOB_ROUTING_KEY, bind, FieldTable::default()).await?;
        ch.queue_bind(&self.dead_queue, &self.dead_letter_exchange, JOB_ROUTING_KEY, bind, FieldTable::default()).await?;
        Ok(())
    }

    /// Declares the delay queue for `delay`: messages expire into the jobs
    /// exchange. Returns the routing key to publish with.
    pub async fn declare_delay(&self, ch: &Channel, delay: Duration) -> anyhow::Result<String> {
        let name = self.delay_queue(delay);
        let mut args = FieldTable::default();
        args.insert("x-message-ttl".into(), AMQPValue::LongLongInt(delay.as_millis() as i64));
        args.insert("x-dead-letter-exchange".into(), AMQPValue::LongString(self.exchange.as_str().into()));
        args.insert("x-dead-letter-routing-key".into(), AMQPValue::LongString(JOB_ROUTING_KEY.into()));
        ch.queue_declare(&name, durable_queue(), args).await?;
        ch.queue_bind(&name, &self.delay_exchange, &name, QueueBindOptions::default(), FieldTable::default()).await?;
        Ok(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_derive_from_the_prefix() {
        let t = Topology::new("t1");
        assert_eq!(t.jobs_queue, "t1.transcode.queue");
        assert_eq!(t.dead_queue, "t1.transcode.dead");
        assert_eq!(t.delay_queue(Duration::from_secs(4)), "t1.transcode.delay.4000");
    }
}
