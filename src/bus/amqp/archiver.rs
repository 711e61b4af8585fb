//! The archiver of a context: it consumes `<p><context>.archiving` (bound to the context's
//! outbound exchange like its route queues) and appends each input, as it arrived, to the
//! stream `<p><context>.archive` that replays read.
//!
//! Why not bind the stream to the outbound exchange itself: RabbitMQ 3.10 closes the connection
//! of a producer whose message, routed to a stream, has a decimal header, and drops array and
//! table headers. The gateway's copy keeps such headers as JSON (`wire::for_stream`), as dead
//! letters do, and the producer's connection never meets the stream.
//!
//! The queue has `x-single-active-consumer`: one instance of a fleet appends at a time, in the
//! queue's order, and another takes over when it goes. Appends are pipelined: each input is
//! acked once the broker confirmed its copy (the settler acks in batches); a copy the broker
//! refused puts the input back. A copy can be appended twice when a session breaks between the
//! confirm and the ack (at least once, never lost); replays drop such twins with dedup.

use std::sync::Arc;

use lapin::Channel;
use lapin::options::BasicQosOptions;
use tokio::sync::{mpsc, watch};

use super::Session;
use super::publisher::{Confirmed, Pending};
use super::settle::{self, Settle, Settling};
use super::wire::{self, Taken};
use super::worker::{Release, SETTLE_GRACE, next_delivery};
use crate::registry::ContextName;
use crate::telemetry;

/// Runs the archiver of `context` on `channel` until `stop`, the end of the queue or a broker
/// error.
pub async fn run(
    session: Arc<Session>,
    context: ContextName,
    channel: Channel,
    mut stop: watch::Receiver<bool>,
) -> lapin::Result<()> {
    channel
        .basic_qos(session.settings.prefetch, BasicQosOptions::default())
        .await?;
    let queue = session.names.archiving(&context);
    let stream = session.names.archive(&context);
    let tag = format!("{}/archive/{context}", session.settings.instance);
    let mut consumer = super::consume(&channel, &queue, &tag).await?;
    let (settler, settled) = mpsc::unbounded_channel();
    let acker = tokio::spawn(settle::run(channel.clone(), settled));
    let ended = loop {
        let taken = match next_delivery(
            &session,
            &channel,
            &mut consumer,
            (&tag, Release::Close),
            &queue,
            &mut stop,
        )
        .await
        {
            Ok(Some(taken)) => taken,
            Ok(None) => break Ok(()),
            Err(error) => break Err(error),
        };
        let sent = send_copy(&session, &stream, &taken).await;
        let (session, context, tag) = (session.clone(), context.clone(), taken.tag);
        let settling = Settling::Later(Box::pin(async move {
            if stored(&session, &context, sent).await {
                Settle::Ack(tag)
            } else {
                Settle::Requeue(tag)
            }
        }));
        if settler.send(settling).is_err() {
            break Ok(());
        }
    };
    drop(settler);
    let acked = acker.await.unwrap_or(Ok(()));
    if ended.is_ok() && acked.is_ok() {
        tokio::time::sleep(SETTLE_GRACE).await;
        let _ = channel
            .close(200, "contextgate archiver stops".into())
            .await;
    }
    ended.and(acked)
}

/// Publishes a copy of `taken` to `stream`, with the headers a stream cannot hold kept as JSON.
pub(super) async fn send_copy(
    session: &Session,
    stream: &str,
    taken: &Taken,
) -> lapin::Result<Pending> {
    let properties = wire::for_stream(taken.properties.clone());
    session
        .publisher
        .send("", stream, &taken.body, properties)
        .await
}

/// Whether the input of a copy sent to `context`'s archive is done with: the broker stored the
/// copy, or there is no archive stream (its declaration was refused; the input is not held up
/// for it). `false` puts the input back: the broker refused the copy, or the session broke.
pub(super) async fn stored(
    session: &Session,
    context: &ContextName,
    sent: lapin::Result<Pending>,
) -> bool {
    let confirmed = match sent {
        Ok(pending) => pending.confirmed().await,
        Err(error) => Err(error),
    };
    match confirmed {
        Ok(Confirmed::Delivered) => {
            metrics::counter!(telemetry::ARCHIVED, "context" => context.to_string()).increment(1);
            true
        }
        Ok(Confirmed::Unroutable(_)) => {
            tracing::warn!(%context, "The archive stream is missing: an input was not archived.");
            true
        }
        Ok(Confirmed::Refused(why)) => {
            tracing::warn!(%context, %why, "An input could not be archived; it goes back to its queue.");
            false
        }
        Err(error) => {
            session.fail(format!("archiving an input failed: {error}"));
            false
        }
    }
}
