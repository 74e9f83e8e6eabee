//! RabbitMQ: settings and connection; the topology, the job message, the
//! confirmed publisher and the dead-letter browser live in submodules.
//!
//! Every publish is persistent, mandatory and waits for the broker's confirm:
//! a 201 to a creator means the job is on disk in the broker, not in a buffer.

mod dead;
mod job;
mod publisher;
mod topology;

use std::time::Duration;

use anyhow::Context;
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{Connection, ConnectionProperties};

use crate::configuration::{Env, Secret};

pub use dead::{DeadJob, DeadLetters, Decision, Requeued};
pub use job::{DeadReason, TranscodeJob, MAX_PRIORITY};
pub use publisher::Publisher;
pub use topology::{Topology, JOB_ROUTING_KEY};

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
    fn trace_headers_survive_an_amqp_field_table() {
        let mut table = FieldTable::default();
        AmqpHeaders(&mut table).set("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into());
        assert_eq!(
            AmqpHeadersRef(&table).get("traceparent"),
            Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
        );
        assert_eq!(AmqpHeadersRef(&table).keys(), ["traceparent"]);
    }
}
