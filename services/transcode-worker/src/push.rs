//! Push mode: `basic.consume` with prefetch = concurrency. The broker sends
//! a job the moment a slot frees up, with no polling cost while idle.

use futures::StreamExt;
use lapin::options::{BasicCancelOptions, BasicConsumeOptions, BasicQosOptions};
use lapin::types::FieldTable;
use lapin::Channel;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::settle::Settler;

/// Takes deliveries until `stop`; each runs as its own task on `tracker`.
pub async fn run(ch: &Channel, queue: &str, tag: &str, settler: &Settler, stop: &CancellationToken, tracker: &TaskTracker) -> anyhow::Result<()> {
    ch.basic_qos(settler.intake.concurrency, BasicQosOptions::default()).await?;
    let mut deliveries = ch.basic_consume(queue, tag, BasicConsumeOptions::default(), FieldTable::default()).await?;
    tracing::info!(queue, prefetch = settler.intake.concurrency, "consuming (push)");
    loop {
        tokio::select! {
            _ = stop.cancelled() => {
                let _ = ch.basic_cancel(tag, BasicCancelOptions::default()).await;
                return Ok(());
            }
            next = deliveries.next() => match next {
                Some(Ok(delivery)) => {
                    tracker.spawn(settler.clone().handle(delivery));
                }
                Some(Err(e)) => return Err(e.into()),
                None => anyhow::bail!("the broker closed the consumer"),
            }
        }
    }
}
