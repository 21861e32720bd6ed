//! Webhooks that a reload can turn on, off or point elsewhere (SPEC section 18).
//!
//! The router holds one handler for its whole life, so it gets a [`Feed`]: a slot the loop
//! fills with the running worker's [`WebhookHandler`] (or empties when webhooks are off).
//! [`Hooks`] owns the worker; a reload with a different `[webhooks]` table starts a new one
//! that takes over once the old one had its grace to deliver (`Webhooks::start_after`), and
//! puts the new handler into the slot, so events queued from then on go to the new worker.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use super::{CountersHandle, Settings, WebhookHandler, Webhooks};
use crate::config::{PusherConfig, WebhooksConfig};
use crate::events::{ChannelActivity, Handler};
use crate::session::User;

/// The router's handle on whichever webhook worker runs (none: events go nowhere). Lives on
/// the loop's thread, so the slot is a `RefCell`, borrowed for one event at a time.
#[derive(Debug, Clone, Default)]
pub struct Feed(Rc<RefCell<Option<WebhookHandler>>>);

impl Feed {
    fn with(&self, f: impl FnOnce(&mut WebhookHandler)) {
        if let Some(handler) = self.0.borrow_mut().as_mut() {
            f(handler);
        }
    }
}

impl Handler for Feed {
    fn connect(&mut self, client_id: &str, user: Option<&User>) {
        self.with(|h| h.connect(client_id, user));
    }
    fn disconnect(&mut self, client_id: &str, user: Option<&User>) {
        self.with(|h| h.disconnect(client_id, user));
    }
    fn subscribe(&mut self, client_id: &str, user: Option<&User>, channel: &str) {
        self.with(|h| h.subscribe(client_id, user, channel));
    }
    fn unsubscribe(&mut self, client_id: &str, user: Option<&User>, channel: &str) {
        self.with(|h| h.unsubscribe(client_id, user, channel));
    }
    fn receive(&mut self, client_id: &str, user: Option<&User>, message: &str) {
        self.with(|h| h.receive(client_id, user, message));
    }
    fn channel(&mut self, activity: &ChannelActivity<'_>) {
        self.with(|h| h.channel(activity));
    }
    fn observes_send(&self) -> bool {
        false
    }
}

/// The running webhook worker (if any), the feed the router holds, and what outlives workers:
/// the node id and the counters.
#[derive(Debug)]
pub struct Hooks {
    worker: Option<Webhooks>,
    feed: Feed,
    node: String,
    counters: CountersHandle,
}

impl Hooks {
    /// Starts the worker `config` asks for (none when it has no url).
    pub fn start(
        config: &WebhooksConfig,
        pusher: &PusherConfig,
        node: String,
    ) -> std::io::Result<Hooks> {
        let mut hooks = Hooks {
            worker: None,
            feed: Feed::default(),
            node,
            counters: CountersHandle::default(),
        };
        hooks.reconfigure(config, pusher, Duration::ZERO)?;
        Ok(hooks)
    }

    /// The handler to give the router.
    pub fn feed(&self) -> Feed {
        self.feed.clone()
    }

    /// The counters, for `/metrics` (the same ones across reloads).
    pub fn counters(&self) -> CountersHandle {
        self.counters.clone()
    }

    /// Whether a worker runs.
    pub fn enabled(&self) -> bool {
        self.worker.is_some()
    }

    /// Runs with `config` from now on: a new worker (or none) replaces the running one, which
    /// gets up to `grace` to deliver what it holds first. Never blocks: the old worker is
    /// stopped from the new one's thread, or from a thread of its own when webhooks go off.
    pub fn reconfigure(
        &mut self,
        config: &WebhooksConfig,
        pusher: &PusherConfig,
        grace: Duration,
    ) -> std::io::Result<()> {
        let old = self.worker.take().map(|w| (w, grace));
        match Settings::from_config(config, pusher, self.node.clone()) {
            Some(settings) => {
                let worker = Webhooks::start_after(settings, old, self.counters.clone())?;
                *self.feed.0.borrow_mut() = Some(worker.handler());
                self.worker = Some(worker);
            }
            None => {
                *self.feed.0.borrow_mut() = None;
                if let Some((old, grace)) = old {
                    std::thread::Builder::new()
                        .name("rakit-webhooks-stop".into())
                        .spawn(move || old.shutdown(grace))?;
                }
            }
        }
        Ok(())
    }

    /// Tries to deliver what is queued within `within` (SPEC: 2 s at shutdown); whether the
    /// worker finished (true without one).
    pub fn shutdown(mut self, within: Duration) -> bool {
        *self.feed.0.borrow_mut() = None;
        self.worker.take().map_or(true, |w| w.shutdown(within))
    }
}
