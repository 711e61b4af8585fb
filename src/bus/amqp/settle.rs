//! Settling deliveries on a consume channel: an input is acked only once everything it caused
//! is confirmed, and inputs finish out of order (lanes run in parallel). Lanes hand the settler
//! each input's settlement, or a future that resolves to it (its confirms), which the settler
//! polls itself. It keeps the lowest tag not yet settled and acks everything below it with one
//! `multiple` ack, every [`ACK_EVERY`] inputs while others are in flight and at once when none
//! is, so that a busy route sends one ack per batch rather than one per message. That ack names the highest
//! tag settled as an ack: RabbitMQ refuses a `multiple` ack naming a tag already put back (a
//! channel error that would put back every input in flight).

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;

use futures_util::stream::{FuturesOrdered, FuturesUnordered};
use futures_util::{FutureExt, StreamExt};
use lapin::Channel;
use lapin::options::{BasicAckOptions, BasicNackOptions};
use tokio::sync::mpsc;

/// How many settled inputs one `multiple` ack covers at most while others are in flight.
pub const ACK_EVERY: u64 = 100;

/// How one delivery ends on its channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settle {
    /// Done: everything it caused is confirmed.
    Ack(u64),
    /// Not done: the broker puts it back for another try (`basic.nack` with requeue).
    Requeue(u64),
}

/// How a delivery's settlement reaches the settler: known now, or once a future resolves
/// (its outputs' confirms, say). The settler polls those futures itself: no task per input.
pub enum Settling {
    Now(Settle),
    Later(Finishing),
}

/// What an input still waits for before it is settled.
pub type Finishing = Pin<Box<dyn Future<Output = Settle> + Send>>;

/// The sending side, one clone per lane.
pub type Settler = mpsc::UnboundedSender<Settling>;

/// Runs until every sender is gone and every input handed over is settled, then acks what is
/// left. Waits for the inputs' futures side by side; whenever the lowest unsettled tag moves,
/// one `multiple` ack goes out without waiting for the one before to be written. An error means
/// the channel is gone: what was not acked will be redelivered.
pub async fn run(
    channel: Channel,
    mut settled: mpsc::UnboundedReceiver<Settling>,
) -> lapin::Result<()> {
    let mut watermark = Watermark::default();
    let mut acked = 0;
    let mut finishing = FuturesUnordered::new();
    let mut acking = FuturesOrdered::new();
    let mut open = true;
    loop {
        tokio::select! {
            biased;
            Some(written) = acking.next(), if !acking.is_empty() => {
                written?;
                continue;
            }
            Some(settle) = finishing.next(), if !finishing.is_empty() => {
                watermark.settle(settle);
                while let Some(Some(settle)) = finishing.next().now_or_never() {
                    watermark.settle(settle);
                }
            }
            next = settled.recv(), if open => {
                let mut next = next;
                if next.is_none() {
                    open = false;
                }
                while let Some(settling) = next {
                    match settling {
                        Settling::Now(settle) => {
                            if let Settle::Requeue(tag) = settle {
                                requeue(&channel, tag).await?;
                            }
                            watermark.settle(settle);
                        }
                        Settling::Later(future) => finishing.push(future),
                    }
                    next = settled.try_recv().ok();
                }
            }
            else => break,
        }
        // One ack per [`ACK_EVERY`] inputs while more are on their way, and at once when none
        // is: each ack costs the broker as much as a few messages.
        let through = watermark.last_ack();
        let idle = finishing.is_empty() && settled.is_empty();
        if through > acked && (through - acked >= ACK_EVERY || idle || !open) {
            let channel = channel.clone();
            acking.push_back(async move {
                channel
                    .basic_ack(through, BasicAckOptions { multiple: true })
                    .await
            });
            acked = through;
        }
    }
    Ok(())
}

/// Puts one delivery back in its queue (`basic.nack` with requeue).
pub async fn requeue(channel: &Channel, tag: u64) -> lapin::Result<()> {
    channel
        .basic_nack(
            tag,
            BasicNackOptions {
                multiple: false,
                requeue: true,
            },
        )
        .await
}

/// Tags are consecutive from 1 on a channel; `through` is the highest tag with every tag up to
/// it settled, `last_ack` the highest of those settled as an ack.
#[derive(Debug, Default)]
struct Watermark {
    through: u64,
    last_ack: u64,
    /// Settled above `through`: whether each is an ack.
    ahead: BTreeMap<u64, bool>,
}

impl Watermark {
    fn settle(&mut self, settle: Settle) {
        let (tag, ack) = match settle {
            Settle::Ack(tag) => (tag, true),
            Settle::Requeue(tag) => (tag, false),
        };
        if tag <= self.through {
            return;
        }
        self.ahead.insert(tag, ack);
        while let Some(ack) = self.ahead.remove(&(self.through + 1)) {
            self.through += 1;
            if ack {
                self.last_ack = self.through;
            }
        }
    }

    #[cfg(test)]
    fn through(&self) -> u64 {
        self.through
    }

    fn last_ack(&self) -> u64 {
        self.last_ack
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_watermark_waits_for_the_lowest_tag() {
        let mut watermark = Watermark::default();
        watermark.settle(Settle::Ack(2));
        watermark.settle(Settle::Ack(3));
        assert_eq!(watermark.through(), 0, "tag 1 is still out");
        watermark.settle(Settle::Requeue(1));
        assert_eq!(watermark.through(), 3);
        watermark.settle(Settle::Ack(5));
        assert_eq!(watermark.through(), 3);
        watermark.settle(Settle::Ack(4));
        assert_eq!(watermark.through(), 5);
        watermark.settle(Settle::Ack(5));
        assert_eq!(watermark.through(), 5, "settling twice changes nothing");
    }

    #[test]
    fn the_multiple_ack_never_names_a_tag_put_back() {
        let mut watermark = Watermark::default();
        watermark.settle(Settle::Ack(1));
        watermark.settle(Settle::Requeue(2));
        assert_eq!((watermark.through(), watermark.last_ack()), (2, 1));
        watermark.settle(Settle::Requeue(3));
        assert_eq!(watermark.last_ack(), 1, "nothing more to ack");
        watermark.settle(Settle::Ack(4));
        assert_eq!((watermark.through(), watermark.last_ack()), (4, 4));
    }
}
