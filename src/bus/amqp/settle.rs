//! Settling deliveries on a consume channel: an input is acked only once everything it caused
//! is confirmed, and inputs finish out of order (lanes run in parallel). The settler keeps the
//! lowest tag not yet settled and acks everything below it with one `multiple` ack, so that a
//! busy route sends one ack per batch rather than one per message.

use std::collections::BTreeSet;

use lapin::Channel;
use lapin::options::{BasicAckOptions, BasicNackOptions};
use tokio::sync::mpsc;

/// How one delivery ends on its channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settle {
    /// Done: everything it caused is confirmed.
    Ack(u64),
    /// Not done: the broker puts it back for another try (`basic.nack` with requeue).
    Requeue(u64),
}

/// The sending side, one clone per task that finishes deliveries.
pub type Settler = mpsc::UnboundedSender<Settle>;

/// Runs until every sender is gone, then acks what is left. An error means the channel is gone:
/// what was not acked will be redelivered.
pub async fn run(
    channel: Channel,
    mut settled: mpsc::UnboundedReceiver<Settle>,
) -> lapin::Result<()> {
    let mut watermark = Watermark::default();
    let mut acked = 0;
    while let Some(first) = settled.recv().await {
        let mut next = Some(first);
        while let Some(settle) = next {
            if let Settle::Requeue(tag) = settle {
                requeue(&channel, tag).await?;
            }
            watermark.settle(settle);
            next = settled.try_recv().ok();
        }
        let through = watermark.through();
        if through > acked {
            channel
                .basic_ack(through, BasicAckOptions { multiple: true })
                .await?;
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
/// it settled.
#[derive(Debug, Default)]
struct Watermark {
    through: u64,
    ahead: BTreeSet<u64>,
}

impl Watermark {
    fn settle(&mut self, settle: Settle) {
        let (Settle::Ack(tag) | Settle::Requeue(tag)) = settle;
        if tag <= self.through {
            return;
        }
        self.ahead.insert(tag);
        while self.ahead.remove(&(self.through + 1)) {
            self.through += 1;
        }
    }

    fn through(&self) -> u64 {
        self.through
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
}
