//! The archive: every context's inputs as they arrived, kept for a bounded time and size so
//! that they can be replayed by time window (`replay`). The RabbitMQ bus keeps them in a stream
//! per context (`bus::amqp::topology::declare_archives`); the in-process bus keeps them on disk
//! here, with a stream's semantics (offsets, timestamps, retention by age and size, whole
//! segments deleted oldest first).
//!
//! # Layout
//! - [`file`]: one context's archive as an append-only log of segment files in a directory.
//! - [`contexts`]: every context's file archive under the data directory, as a replay's source.

pub mod contexts;
pub mod file;
