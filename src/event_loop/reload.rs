//! The loop's side of SIGHUP (SPEC section 18, `src/reload.rs`): ask the reload thread, and
//! swap in what it finished. Nothing here reads a file or waits.
//!
//! What a swap touches: `self.config` (which `accept::decide` reads for every handshake), and
//! what the loop keeps derived from it: the router's command policy, the HTTP side's settings,
//! the log level, the TLS settings of new connections, the webhook worker. Open connections
//! keep what they negotiated (their TLS session, their subprotocol, their user).

use std::sync::Arc;
use std::time::Duration;

use mio::Waker;

use super::EventLoop;
use crate::reload::{Outcome, Reloaded, Reloader, Source};

/// How long the webhook worker that a reload replaces may go on delivering what it holds (as at
/// shutdown, SPEC section 10).
const WEBHOOK_HANDOVER: Duration = Duration::from_secs(2);

impl EventLoop {
    /// Starts the reload thread (the daemon's SIGHUP); `source` is where it reads the file.
    pub(crate) fn enable_reload(
        &mut self,
        source: Option<Source>,
        waker: Arc<Waker>,
    ) -> std::io::Result<()> {
        self.reloader = Some(Reloader::start(source, self.config.clone(), waker)?);
        Ok(())
    }

    /// SIGHUP: one more reload is wanted. Folded into one already waiting (a storm of signals
    /// is one reload after the reload in progress).
    pub(super) fn request_reload(&mut self) {
        match &self.reloader {
            Some(reloader) => {
                if !reloader.request() {
                    log::debug!("SIGHUP: a reload is already queued");
                }
            }
            None => log::info!("SIGHUP: nothing to reload"),
        }
    }

    /// The waker fired: applies every reload the thread finished.
    pub(super) fn reload_wake(&mut self) {
        while let Some(outcome) = self.reloader.as_ref().and_then(Reloader::take) {
            match outcome {
                Outcome::Apply(reloaded) => self.apply_reload(*reloaded),
                Outcome::Refused(reason) => {
                    log::error!("SIGHUP: config not reloaded, keeping the running one: {reason}");
                }
            }
        }
    }

    fn apply_reload(&mut self, reloaded: Reloaded) {
        let Reloaded { plan, tls, from } = reloaded;
        let webhooks_changed = plan.config.webhooks != self.config.webhooks;
        let namespaces_changed = plan.config.namespaces != self.config.namespaces;
        let (old_level, level) = (self.config.logging_level, plan.config.logging_level);
        self.config = plan.config;
        self.router.set_command_policy(self.config.command_policy);
        self.router.set_limits(self.config.limits.router());
        self.router.set_token_key(crate::router::TokenKey::new(
            self.config.session.secret.as_bytes(),
        ));
        if namespaces_changed {
            self.router
                .set_namespaces(std::rc::Rc::new(self.config.namespaces()));
        }
        self.admission.set_rules(self.config.limits.admission());
        self.peer_sockets.set_rules(&self.config.limits.admission());
        self.proxies = self.config.limits.proxies();
        self.http = crate::http::HttpSettings::new(&self.config);
        // This reload's own lines go out at the more verbose of the two levels.
        crate::logging::set_level(if level.to_level_filter() > old_level.to_level_filter() {
            level
        } else {
            old_level
        });
        if let Some(tls) = tls {
            self.tls = Some(tls);
            if let Some((cert, _)) = self.config.tls.files() {
                log::info!("SIGHUP: TLS certificate reloaded from {}", cert.display());
            }
        }
        if webhooks_changed {
            if let Some(hooks) = self.webhooks.as_mut() {
                if let Err(e) =
                    hooks.reconfigure(&self.config.webhooks, &self.config.pusher, WEBHOOK_HANDOVER)
                {
                    log::error!("SIGHUP: cannot start the webhook worker: {e}");
                }
            }
        }
        if let Some(warning) = crate::accept::cookie_origin_warning(&self.config) {
            log::warn!("{warning}");
        }
        for key in &plan.restart {
            log::warn!(
                "SIGHUP: {key} changed in {from} but needs a restart; the running value is kept"
            );
        }
        let applied = if plan.applied.is_empty() {
            "no reloadable value changed".to_owned()
        } else {
            format!("applied {}", plan.applied.join(", "))
        };
        log::info!("SIGHUP: config reloaded from {from}: {applied}");
        crate::logging::set_level(level);
    }

    /// The webhook worker, for the shutdown (it gets its grace after the loop ended).
    pub(crate) fn take_webhooks(&mut self) -> Option<crate::webhooks::Hooks> {
        self.webhooks.take()
    }
}
