//! Publishing with confirms on the publish connection's channel. Every publish is persistent and
//! `mandatory`; only the broker's ack without a returned message counts as delivered. While the
//! broker blocks the connection (a memory or disk alarm) a confirm is waited for as long as the
//! block lasts: work pauses, nothing is given up.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::types::ShortString;
use lapin::{BasicProperties, Channel, Confirmation, Connection, PublisherConfirm};

use super::Status;

/// What the broker said about one publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Confirmed {
    /// Stored (or, for a quorum queue, accepted by a quorum).
    Delivered,
    /// No queue was bound for it: `basic.return` with this reply text.
    Unroutable(String),
    /// The broker refused it (`basic.nack`) or did not answer within the confirm timeout: it
    /// may still have been stored.
    Refused(String),
}

#[derive(Debug)]
pub struct Publisher {
    channel: Channel,
    confirm_timeout: Duration,
    status: Arc<Status>,
}

impl Publisher {
    pub async fn open(
        connection: &Connection,
        confirm_timeout: Duration,
        status: Arc<Status>,
    ) -> lapin::Result<Self> {
        let channel = connection.create_channel().await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        Ok(Self {
            channel,
            confirm_timeout,
            status,
        })
    }

    pub fn channel(&self) -> &Channel {
        &self.channel
    }

    /// Sends one message; the returned [`Pending`] resolves to the broker's answer. Messages
    /// sent one after another on this publisher reach a queue in that order.
    pub async fn send(
        &self,
        exchange: &str,
        routing_key: &str,
        body: &Bytes,
        properties: BasicProperties,
    ) -> lapin::Result<Pending> {
        let routing_key = ShortString::try_new(routing_key).unwrap_or_else(|_| {
            // Longer than AMQP allows: nothing can be bound to it, so the broker returns it.
            ShortString::from("contextgate.routing-key-too-long")
        });
        let confirm = self
            .channel
            .basic_publish(
                exchange.into(),
                routing_key,
                BasicPublishOptions {
                    mandatory: true,
                    ..BasicPublishOptions::default()
                },
                body,
                properties,
            )
            .await?;
        Ok(Pending {
            confirm,
            timeout: self.confirm_timeout,
            status: self.status.clone(),
        })
    }
}

/// A publish waiting for the broker's confirm.
#[derive(Debug)]
pub struct Pending {
    confirm: PublisherConfirm,
    timeout: Duration,
    status: Arc<Status>,
}

impl Pending {
    /// The broker's answer, waiting as long as the broker blocks us (the data plane: pausing
    /// loses nothing).
    pub async fn confirmed(self) -> lapin::Result<Confirmed> {
        self.wait(true).await
    }

    /// The broker's answer within the confirm timeout, blocked or not (HTTP ingest: the client
    /// gets its 503 and retries).
    pub async fn confirmed_in_time(self) -> lapin::Result<Confirmed> {
        self.wait(false).await
    }

    async fn wait(self, through_blocks: bool) -> lapin::Result<Confirmed> {
        let mut confirm = self.confirm;
        loop {
            match tokio::time::timeout(self.timeout, &mut confirm).await {
                Ok(answer) => {
                    return Ok(match answer? {
                        Confirmation::Ack(None) | Confirmation::NotRequested => {
                            Confirmed::Delivered
                        }
                        Confirmation::Ack(Some(returned)) => {
                            Confirmed::Unroutable(returned.reply_text.to_string())
                        }
                        Confirmation::Nack(_) => {
                            Confirmed::Refused("the broker refused the message (basic.nack)".into())
                        }
                    });
                }
                Err(_) if through_blocks && self.status.is_blocked() => {
                    tracing::debug!("Still waiting for a confirm: the broker blocks publishing.");
                }
                Err(_) => {
                    return Ok(Confirmed::Refused(format!(
                        "the broker did not confirm the message within {}",
                        humantime::format_duration(self.timeout)
                    )));
                }
            }
        }
    }
}
