//! Dead letters on RabbitMQ: each route's dead letters wait in its queue `dead.<route>` (those
//! that failed before any route was picked in `dead._unrouted`). The API reads them one by one
//! with `basic.get` on a channel of its own, without acknowledging: closing that channel puts
//! every one it did not take back in the queue, in order. Deleting acknowledges the one chosen;
//! redriving publishes it (with confirms) straight to the route's queue, as a first attempt
//! without the gateway's headers, and acknowledges it only once the broker confirmed that copy.
//!
//! One request reads at most [`MAX_SCAN`] messages. While a request reads, the messages it holds
//! are invisible to another request (a second gateway instance's, say) until it closes; the
//! channel is closed on every path, and the API runs these in tasks of their own so that a
//! cancelled request does not cut one short. A redrive whose copy was confirmed but whose ack
//! was lost (the connection dropped between the two) leaves the dead letter in place: a later
//! redrive sends it again — at least once, like every delivery of the gateway.

use std::sync::atomic::{AtomicUsize, Ordering};

use lapin::Channel;
use lapin::options::{BasicAckOptions, BasicGetOptions};

use super::publisher::Confirmed;
use super::wire::Taken;
use super::{AmqpBus, IngestError, Session};
use crate::bus::dead_letters::{DeadLetterView, MAX_SCAN, Redriven};
use crate::registry::RouteName;

impl AmqpBus {
    /// Up to `max` dead letters of `route` (`None`: those that had no route), oldest first.
    pub async fn dead_letters(
        &self,
        route: Option<&RouteName>,
        max: usize,
    ) -> Result<Vec<DeadLetterView>, IngestError> {
        let session = self.current_session()?;
        let queue = self.names().dead_letter_queue(route.map(RouteName::as_str));
        let reader = Reader::open(&session, queue).await?;
        let mut views = Vec::new();
        let read = async {
            while views.len() < max.min(MAX_SCAN) {
                match reader.next().await? {
                    Some(taken) => {
                        views.push(taken.dead_letter_view(route.map(RouteName::as_str)));
                    }
                    None => break,
                }
            }
            Ok::<_, IngestError>(())
        }
        .await;
        reader.close().await;
        read.map(|()| views)
    }

    /// Deletes the dead letter `id` of `route`; `false` when there is none.
    pub async fn delete_dead_letter(
        &self,
        route: Option<&RouteName>,
        id: &str,
    ) -> Result<bool, IngestError> {
        let session = self.current_session()?;
        let queue = self.names().dead_letter_queue(route.map(RouteName::as_str));
        let reader = Reader::open(&session, queue).await?;
        let deleted = async {
            Ok::<_, IngestError>(match reader.find(id).await? {
                Some(taken) => {
                    reader.ack(taken.tag).await?;
                    true
                }
                None => false,
            })
        }
        .await;
        reader.close().await;
        deleted
    }

    /// Puts the dead letters of `route` (the one with `id`, or all it holds now, up to
    /// [`MAX_SCAN`]) back on the route's queue. `None` when `id` names none.
    pub async fn redrive(
        &self,
        route: &RouteName,
        id: Option<&str>,
    ) -> Result<Option<Redriven>, IngestError> {
        let session = self.current_session()?;
        let queue = self.names().dead_letter_queue(Some(route.as_str()));
        let target = self.names().route_queue(route.as_str());
        let reader = Reader::open(&session, queue).await?;
        let mut redriven = Redriven::default();
        let outcome = async {
            match id {
                Some(id) => match reader.find(id).await? {
                    Some(taken) => reader.redrive(&session, &target, &taken).await?,
                    None => return Ok(false),
                },
                None => {
                    // Only what is there now: a redriven message that fails again comes back
                    // at the end of the queue and must not be taken a second time.
                    let mut budget = MAX_SCAN;
                    while budget > 0 {
                        let Some((taken, left)) = reader.next_counted().await? else {
                            break;
                        };
                        budget = budget.min(left + 1) - 1;
                        reader.redrive(&session, &target, &taken).await?;
                        redriven.count("queued");
                    }
                    return Ok(true);
                }
            }
            redriven.count("queued");
            Ok::<_, IngestError>(true)
        }
        .await;
        // What stays: the ones read and left (they go back on close) and the ones not read.
        redriven.remaining = reader.held() + reader.left();
        reader.close().await;
        if !outcome? {
            return Ok(None);
        }
        tracing::info!(%route, redriven = redriven.redriven, "Dead letters redriven to the route's queue.");
        Ok(Some(redriven))
    }
}

/// A channel of its own that reads one dead-letter queue.
struct Reader {
    channel: Channel,
    queue: String,
    /// Read and not acknowledged (they go back to the queue when the channel closes).
    held: AtomicUsize,
    /// What the broker said was left in the queue after the last read.
    left: AtomicUsize,
}

impl Reader {
    async fn open(session: &Session, queue: String) -> Result<Self, IngestError> {
        let channel = session.admin.create_channel().await.map_err(broker)?;
        Ok(Self {
            channel,
            queue,
            held: AtomicUsize::new(0),
            left: AtomicUsize::new(0),
        })
    }

    fn held(&self) -> usize {
        self.held.load(Ordering::Relaxed)
    }

    fn left(&self) -> usize {
        self.left.load(Ordering::Relaxed)
    }

    async fn next(&self) -> Result<Option<Taken>, IngestError> {
        Ok(self.next_counted().await?.map(|(taken, _)| taken))
    }

    /// The next message and how many are left after it.
    async fn next_counted(&self) -> Result<Option<(Taken, usize)>, IngestError> {
        let got = self
            .channel
            .basic_get(
                self.queue.as_str().into(),
                BasicGetOptions { no_ack: false },
            )
            .await
            .map_err(broker)?;
        Ok(got.map(|message| {
            let left = message.message_count as usize;
            self.held.fetch_add(1, Ordering::Relaxed);
            self.left.store(left, Ordering::Relaxed);
            (Taken::from_lapin(message.delivery), left)
        }))
    }

    /// Reads until the dead letter `id` (held, not yet acknowledged).
    async fn find(&self, id: &str) -> Result<Option<Taken>, IngestError> {
        for _ in 0..MAX_SCAN {
            let Some(taken) = self.next().await? else {
                return Ok(None);
            };
            // Any other stays held, and goes back when the channel closes.
            if taken.dead_letter_view(None).id == id {
                return Ok(Some(taken));
            }
        }
        Ok(None)
    }

    async fn ack(&self, tag: u64) -> Result<(), IngestError> {
        self.channel
            .basic_ack(tag, BasicAckOptions::default())
            .await
            .map_err(broker)?;
        self.held.fetch_sub(1, Ordering::Relaxed);
        Ok(())
    }

    /// Publishes `taken` to `queue` and, once the broker confirmed it, acknowledges the dead
    /// letter. A copy the broker did not take leaves the dead letter where it was.
    async fn redrive(
        &self,
        session: &Session,
        queue: &str,
        taken: &Taken,
    ) -> Result<(), IngestError> {
        let confirmed = session
            .publisher
            .send("", queue, &taken.body, taken.redrive_properties())
            .await
            .map_err(broker)?
            .confirmed_in_time()
            .await
            .map_err(broker)?;
        match confirmed {
            Confirmed::Delivered => self.ack(taken.tag).await,
            Confirmed::Unroutable(why) | Confirmed::Refused(why) => Err(IngestError::NotConfirmed(
                format!("the route's queue {queue} did not take the redriven message: {why}"),
            )),
        }
    }

    /// Closes the channel: every message read and not acknowledged goes back to the queue.
    async fn close(self) {
        let _ = self.channel.close(200, "dead letters read".into()).await;
    }
}

fn broker(error: lapin::Error) -> IngestError {
    IngestError::NotConfirmed(error.to_string())
}
