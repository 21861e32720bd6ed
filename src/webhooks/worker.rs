//! The webhook worker thread: batches queued events and POSTs them, with retries.
//!
//! ```text
//!   Idle ──event──► Collecting(oldest + batch_ms) ──full or due──► Sending(attempt)
//!    ▲                                                              │ 2xx: sent
//!    │                                                              │ 4xx, 3xx: failed
//!    └──────────────────────────────────────────────────────────────┤ 5xx, timeout, no connection:
//!                                                                   │   backoff, attempt + 1,
//!                                                                   └─  failed after `retries`
//! ```
//!
//! One batch at a time, in queue order, so events of this node reach the endpoint in the order
//! they happened. While a batch is being sent or retried, new events wait in the bounded queue
//! (and beyond `queue_max`, or `queue_max_bytes` counting the batch in flight, the loop drops
//! them): a slow endpoint costs memory up to the queue's bounds, never time on the loop. An
//! event's bytes are given back when its batch is done with (sent, failed or dropped).
//!
//! Stopping (after [`super::Webhooks::shutdown`]): no more waiting for `batch_ms`; what is
//! queued goes out in full batches while the deadline allows (each attempt's timeout and each
//! backoff is cut to what is left), and whatever remains then is counted as dropped.

use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError, TryRecvError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::event::now_ms;
use super::{Msg, Queued, Settings, Shared};

/// Longest wait between two attempts, however many retries are configured.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

pub(super) struct Worker {
    settings: Settings,
    rx: Receiver<Msg>,
    shared: Arc<Shared>,
    agent: ureq::Agent,
}

/// How one attempt went.
enum Attempt {
    Delivered,
    /// 5xx, timeout, connection error: worth another try.
    Retry(String),
    /// 4xx, a redirect, a malformed request: another try would get the same.
    GiveUp(String),
}

impl Worker {
    pub(super) fn new(settings: Settings, rx: Receiver<Msg>, shared: Arc<Shared>) -> Worker {
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(settings.timeout))
            // Non-2xx statuses are answers to inspect, not errors.
            .http_status_as_error(false)
            // A webhook that redirects is misconfigured; following it could replay the POST.
            .max_redirects(0)
            // The endpoint is the application's own backend: no proxy from the environment.
            .proxy(None)
            .max_idle_connections(1)
            .max_idle_connections_per_host(1)
            .build()
            .into();
        Worker {
            settings,
            rx,
            shared,
            agent,
        }
    }

    pub(super) fn run(self) {
        while let Some(first) = self.next() {
            let mut batch = vec![first];
            self.collect(&mut batch);
            self.deliver(batch);
        }
        // Stopped: whatever is still queued will not be sent.
        let mut left = 0;
        while let Ok(msg) = self.rx.try_recv() {
            if let Msg::Event(q) = msg {
                self.shared.bytes.release(q.json.len());
                left += 1;
            }
        }
        if left > 0 {
            self.shared
                .counters
                .dropped
                .fetch_add(left, Ordering::Relaxed);
            log::warn!("webhooks: {left} events not sent at shutdown");
        }
    }

    /// The next event: waits while running; `None` once stopping and nothing is queued, once the
    /// deadline has passed, or once every sender is gone.
    fn next(&self) -> Option<Queued> {
        loop {
            let msg = match self.shared.stop_at() {
                Some(deadline) if Instant::now() >= deadline => return None,
                Some(_) => self.rx.try_recv().ok()?,
                None => self.rx.recv().ok()?,
            };
            if let Msg::Event(q) = msg {
                return Some(q);
            }
        }
    }

    /// Adds events until the batch is full or its oldest is `batch_ms` old (at once when
    /// stopping).
    fn collect(&self, batch: &mut Vec<Queued>) {
        let due = batch[0].at + self.settings.batch_ms;
        while batch.len() < self.settings.batch_max {
            let msg = match self.rx.try_recv() {
                Ok(msg) => msg,
                Err(TryRecvError::Disconnected) => return,
                Err(TryRecvError::Empty) => {
                    let now = Instant::now();
                    if self.shared.stop_at().is_some() || now >= due {
                        return;
                    }
                    match self.rx.recv_timeout(due - now) {
                        Ok(msg) => msg,
                        Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => return,
                    }
                }
            };
            if let Msg::Event(q) = msg {
                batch.push(q);
            }
        }
    }

    /// Sends one batch with retries and counts its events as sent or failed; then its bytes
    /// are free for new events.
    fn deliver(&self, batch: Vec<Queued>) {
        let bytes = batch.iter().map(|q| q.json.len()).sum();
        self.send(batch);
        self.shared.bytes.release(bytes);
    }

    fn send(&self, batch: Vec<Queued>) {
        let n = batch.len() as u64;
        let format = &self.settings.format;
        let body = format.body(
            now_ms(),
            &self.settings.node,
            batch.iter().map(|q| &*q.json),
        );
        drop(batch);
        let headers = format.headers(&body);
        let mut backoff = self.settings.backoff;
        let mut attempt = 0;
        let why = loop {
            let Some(timeout) = self.time_left(self.settings.timeout) else {
                break "shutdown deadline reached".to_owned();
            };
            match self.attempt(&body, &headers, timeout) {
                Attempt::Delivered => {
                    self.shared.counters.sent.fetch_add(n, Ordering::Relaxed);
                    return;
                }
                Attempt::GiveUp(why) => break why,
                Attempt::Retry(why) if attempt >= self.settings.retries => {
                    break format!("{why} (after {attempt} retries)")
                }
                Attempt::Retry(why) => {
                    if !self.sleep(backoff) {
                        break format!("{why} (no time left to retry before shutdown)");
                    }
                    attempt += 1;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        };
        self.shared.counters.failed.fetch_add(n, Ordering::Relaxed);
        log::warn!("webhooks: dropped a batch of {n} events: {why}");
    }

    fn attempt(&self, body: &[u8], headers: &[(&str, String)], timeout: Duration) -> Attempt {
        // Exactly `application/json`: the Node `pusher` library's WebHook accepts nothing else.
        let mut request = self
            .agent
            .post(&self.settings.url)
            .header("Content-Type", "application/json");
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        let request = request.config().timeout_global(Some(timeout)).build();
        match request.send(body) {
            Ok(mut response) => {
                let status = response.status().as_u16();
                // Read the (small) answer so the connection can be reused.
                let _ = response
                    .body_mut()
                    .with_config()
                    .limit(64 * 1024)
                    .read_to_vec();
                match status {
                    200..=299 => Attempt::Delivered,
                    500..=599 => Attempt::Retry(format!("HTTP {status}")),
                    _ => Attempt::GiveUp(format!("HTTP {status}")),
                }
            }
            Err(e) => match e {
                ureq::Error::Timeout(_)
                | ureq::Error::Io(_)
                | ureq::Error::ConnectionFailed
                | ureq::Error::HostNotFound
                | ureq::Error::Protocol(_) => Attempt::Retry(e.to_string()),
                other => Attempt::GiveUp(other.to_string()),
            },
        }
    }

    /// `want`, cut to the time before the shutdown deadline; `None` when none is left.
    fn time_left(&self, want: Duration) -> Option<Duration> {
        match self.shared.stop_at() {
            None => Some(want),
            Some(deadline) => {
                let left = deadline.checked_duration_since(Instant::now())?;
                (!left.is_zero()).then(|| want.min(left))
            }
        }
    }

    /// Waits `d` before a retry. False when a shutdown deadline comes first (then the retry
    /// would not happen in time anyway). Shutdown unparks this thread, so a long backoff does
    /// not hold it up.
    fn sleep(&self, d: Duration) -> bool {
        let until = Instant::now() + d;
        loop {
            if let Some(deadline) = self.shared.stop_at() {
                if until >= deadline {
                    return false;
                }
            }
            let now = Instant::now();
            if now >= until {
                return true;
            }
            std::thread::park_timeout(until - now);
        }
    }
}
