//! Webhooks (SPEC section 10): events POSTed to the application's backend, from a worker thread.
//!
//! The event loop never waits for them. It feeds events through a [`WebhookHandler`] (an
//! [`events::Handler`](crate::events::Handler), so it sits beside the logging handler behind
//! [`events::Both`](crate::events::Both)): each event is encoded to JSON at once and offered to a
//! bounded queue with `try_send`. A full queue drops the event and counts it; nothing blocks.
//! The worker ([`worker`]) batches, signs, POSTs and retries.
//!
//! Two formats share all of it ([`format`]): SPEC section 10's (client events: `connect`,
//! `subscribe`, ..., encoded by [`event`]), and Pusher's with `[webhooks] format = "pusher"`
//! (channel events: `channel_occupied`, `member_added`, ..., encoded by [`pusher`]). The config
//! allows only the events of its format, so one queue never mixes them.
//!
//! # Wiring
//!
//! ```text
//! let hooks = Settings::from_config(&config.webhooks, &config.pusher, random_node_id())
//!     .map(Webhooks::start).transpose()?;                 // at start; None when off
//! let handler = Both(LogHandler, hooks.as_ref().map(Webhooks::handler));  // Option<H> is a Handler
//! ... Router::new(router_config, Box::new(handler), seed) ...
//! gauges.webhooks = hooks.as_ref().map_or_else(Default::default, |h| h.counters().snapshot());
//! hooks.map(|h| h.shutdown(Duration::from_secs(2)));     // on SIGTERM, after the loop's drain
//! ```
//!
//! Memory: at most `queue_max` queued events plus the batch in flight (at most `batch_max`),
//! and at most `queue_max_bytes` of their JSON, the batch in flight included (plus the one event
//! that may take it past the bound, see `queue_bytes.rs`). The bytes bound is what holds
//! against a client: an event's JSON is a hundred bytes or so, except `message` events, which
//! carry the client's text (up to `max_buffer_size`) escaped, control characters six bytes
//! each. The queue's slots (about 48 bytes each) are allocated when the worker starts.

mod event;
mod format;
mod pusher;
mod worker;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

pub use self::event::{batch_body, encode, now_ms, random_node_id, signature, Detail};
pub use self::format::Format;
use crate::config::{PusherConfig, WebhookEvent, WebhooksConfig};
use crate::events::{ChannelActivity, Handler};
use crate::metrics::WebhookCounts;
use crate::queue_bytes::QueueBytes;
use crate::session::User;

/// Everything the worker needs (the `[webhooks]` table, resolved).
#[derive(Debug, Clone)]
pub struct Settings {
    pub url: String,
    /// The wire format and its signing key.
    pub format: Format,
    pub events: Vec<WebhookEvent>,
    pub batch_max: usize,
    pub batch_ms: Duration,
    pub queue_max: usize,
    /// Bytes of queued JSON, the batch in flight included.
    pub queue_max_bytes: usize,
    /// Timeout of one POST.
    pub timeout: Duration,
    pub retries: u32,
    /// Wait before the first retry; doubled for each further one (up to 30 s). Not a config
    /// key: 250 ms from the config, shorter in tests.
    pub backoff: Duration,
    /// The `node` field of every batch.
    pub node: String,
}

impl Settings {
    /// `None` when webhooks are off (no url). Pusher's format signs with `pusher`'s app.
    pub fn from_config(
        config: &WebhooksConfig,
        pusher: &PusherConfig,
        node: String,
    ) -> Option<Settings> {
        config.enabled().then(|| Settings {
            url: config.url.clone(),
            format: Format::from_config(config, pusher),
            events: config.events().to_vec(),
            batch_max: config.batch_max.max(1),
            batch_ms: Duration::from_millis(config.batch_ms),
            queue_max: config.queue_max.max(1),
            queue_max_bytes: usize::try_from(config.queue_max_bytes).unwrap_or(usize::MAX),
            timeout: Duration::from_millis(config.timeout_ms.max(1)),
            retries: config.retries,
            backoff: Duration::from_millis(250),
            node,
        })
    }
}

/// An event waiting in the queue: its JSON and when it was queued (for `batch_ms`).
struct Queued {
    json: Box<str>,
    at: Instant,
}

enum Msg {
    Event(Queued),
    /// Wakes a worker blocked on an empty queue so it sees the stop request.
    Stop,
}

/// The per-event counters of `rakit_webhook_events_total` (atomics are fine here: they move
/// once per event, not per delivery).
#[derive(Debug, Default)]
struct Counters {
    sent: AtomicU64,
    failed: AtomicU64,
    dropped: AtomicU64,
}

/// What the loop, the handler and the worker share.
#[derive(Debug)]
struct Shared {
    counters: Counters,
    /// Set by `shutdown`: the worker stops waiting and gives up at this instant.
    stop: Mutex<Option<Instant>>,
    /// The JSON queued or in flight (`queue_max_bytes`): reserved by the handler, given back
    /// by the worker once the event's batch is done with.
    bytes: QueueBytes,
}

impl Shared {
    fn new(queue_max_bytes: usize) -> Shared {
        Shared {
            counters: Counters::default(),
            stop: Mutex::new(None),
            bytes: QueueBytes::new(queue_max_bytes),
        }
    }

    fn stop_at(&self) -> Option<Instant> {
        *self.stop.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A cheap handle on the counters, for `/metrics`.
#[derive(Debug, Clone)]
pub struct CountersHandle(Arc<Shared>);

impl CountersHandle {
    /// The counts so far.
    pub fn snapshot(&self) -> WebhookCounts {
        let c = &self.0.counters;
        WebhookCounts {
            sent: c.sent.load(Ordering::Relaxed),
            failed: c.failed.load(Ordering::Relaxed),
            dropped: c.dropped.load(Ordering::Relaxed),
        }
    }
}

/// The running webhook worker.
pub struct Webhooks {
    tx: SyncSender<Msg>,
    shared: Arc<Shared>,
    events: Vec<WebhookEvent>,
    thread: JoinHandle<()>,
    done: Receiver<()>,
}

impl std::fmt::Debug for Webhooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhooks")
            .field("events", &self.events)
            .finish_non_exhaustive()
    }
}

impl Webhooks {
    /// Starts the worker thread (`rakit-webhooks`).
    pub fn start(settings: Settings) -> std::io::Result<Webhooks> {
        let (tx, rx) = sync_channel(settings.queue_max);
        let shared = Arc::new(Shared::new(settings.queue_max_bytes));
        let (done_tx, done) = sync_channel(1);
        let events = settings.events.clone();
        let worker = worker::Worker::new(settings, rx, Arc::clone(&shared));
        let thread = thread::Builder::new()
            .name("rakit-webhooks".into())
            .spawn(move || {
                worker.run();
                let _ = done_tx.send(());
            })?;
        Ok(Webhooks {
            tx,
            shared,
            events,
            thread,
            done,
        })
    }

    /// A handler that feeds this worker (give it to the router). Cheap to clone.
    pub fn handler(&self) -> WebhookHandler {
        let mut wants = [false; WebhookEvent::ALL.len()];
        for e in &self.events {
            wants[*e as usize] = true;
        }
        WebhookHandler {
            tx: self.tx.clone(),
            shared: Arc::clone(&self.shared),
            wants,
        }
    }

    /// The counters, for `/metrics`.
    pub fn counters(&self) -> CountersHandle {
        CountersHandle(Arc::clone(&self.shared))
    }

    /// Tries to deliver what is queued within `within` (SPEC: 2 s), then returns whether the
    /// worker finished. Best effort: a POST already in flight cannot be cut short, so the worker
    /// may still be busy when this returns; it then ends with the process.
    pub fn shutdown(self, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        *self.shared.stop.lock().unwrap_or_else(|e| e.into_inner()) = Some(deadline);
        // Full means the worker is busy, not waiting: it sees the deadline on its own.
        let _ = self.tx.try_send(Msg::Stop);
        self.thread.thread().unpark();
        drop(self.tx);
        self.done.recv_timeout(within).is_ok()
    }
}

/// Feeds events to the worker; an [`events::Handler`](crate::events::Handler).
#[derive(Debug, Clone)]
pub struct WebhookHandler {
    tx: SyncSender<Msg>,
    shared: Arc<Shared>,
    /// Indexed by `WebhookEvent as usize`.
    wants: [bool; WebhookEvent::ALL.len()],
}

impl WebhookHandler {
    /// Queues one event if it is configured. Never blocks: a full queue drops and counts it.
    /// Returns whether it was queued.
    pub fn push(
        &self,
        name: WebhookEvent,
        client_id: &str,
        user: Option<&User>,
        detail: Detail<'_>,
    ) -> bool {
        if !self.wants[name as usize] {
            return false;
        }
        if self.full() {
            return false;
        }
        self.queue(encode(name, client_id, user, now_ms(), detail))
    }

    /// Queues a channel event of Pusher's format if it is configured (see [`Self::push`]).
    pub fn push_channel(&self, activity: &ChannelActivity<'_>) -> bool {
        if !self.wants[pusher::event_of(activity) as usize] {
            return false;
        }
        if self.full() {
            return false;
        }
        self.queue(pusher::encode(activity))
    }

    /// The queue holds its bytes bound already: the event is dropped (and counted) before it
    /// costs an encoding.
    fn full(&self) -> bool {
        let full = self.shared.bytes.held() >= self.shared.bytes.max();
        if full {
            self.shared.counters.dropped.fetch_add(1, Ordering::Relaxed);
        }
        full
    }

    fn queue(&self, json: String) -> bool {
        let n = json.len();
        let queued = Queued {
            json: json.into_boxed_str(),
            at: Instant::now(),
        };
        if self.shared.bytes.try_reserve(n) {
            match self.tx.try_send(Msg::Event(queued)) {
                Ok(()) => return true,
                Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                    self.shared.bytes.release(n);
                }
            }
        }
        self.shared.counters.dropped.fetch_add(1, Ordering::Relaxed);
        false
    }
}

impl Handler for WebhookHandler {
    fn connect(&mut self, client_id: &str, user: Option<&User>) {
        self.push(WebhookEvent::Connect, client_id, user, Detail::None);
    }
    fn disconnect(&mut self, client_id: &str, user: Option<&User>) {
        self.push(WebhookEvent::Disconnect, client_id, user, Detail::None);
    }
    fn subscribe(&mut self, client_id: &str, user: Option<&User>, channel: &str) {
        self.push(
            WebhookEvent::Subscribe,
            client_id,
            user,
            Detail::Channel(channel),
        );
    }
    fn unsubscribe(&mut self, client_id: &str, user: Option<&User>, channel: &str) {
        self.push(
            WebhookEvent::Unsubscribe,
            client_id,
            user,
            Detail::Channel(channel),
        );
    }
    fn receive(&mut self, client_id: &str, user: Option<&User>, message: &str) {
        self.push(
            WebhookEvent::Message,
            client_id,
            user,
            Detail::Text(message),
        );
    }
    fn channel(&mut self, activity: &ChannelActivity<'_>) {
        self.push_channel(activity);
    }
    fn observes_send(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests;
