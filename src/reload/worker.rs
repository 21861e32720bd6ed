//! The `rakit-reload` thread: does everything a reload needs that may block (reading the file
//! and the TLS files) away from the event loop, and hands the loop a finished [`Outcome`].
//!
//! Requests come through a queue of one: a request made while another waits is the same request
//! (a HUP storm coalesces), and one made while a reload is in progress is queued, so the file is
//! always read once more after the last signal. Outcomes go back through a bounded queue, and
//! the loop's one `mio::Waker` tells the loop to look.

use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::Arc;

use mio::Waker;
use rustls::ServerConfig;

use super::{plan, Plan, Source};
use crate::config::Config;

/// Outcomes the loop has not taken yet, at most (it takes them on the next wake, so more
/// than one waits only while the loop is busy with a long turn).
const OUTCOMES: usize = 4;

/// What one reload came to.
#[derive(Debug)]
pub enum Outcome {
    /// A valid file: swap.
    Apply(Box<Reloaded>),
    /// An invalid or unreadable file: nothing changes. The reason, in one line.
    Refused(String),
}

/// A valid file, ready to swap in.
#[derive(Debug)]
pub struct Reloaded {
    pub plan: Plan,
    /// The TLS settings read from the files, when TLS is on.
    pub tls: Option<Arc<ServerConfig>>,
    /// Where it came from, for the log.
    pub from: String,
}

/// The loop's end of the reload thread.
#[derive(Debug)]
pub struct Reloader {
    requests: SyncSender<()>,
    outcomes: Receiver<Outcome>,
}

impl Reloader {
    /// Starts the thread. `running` is the configuration the loop starts with; `source`,
    /// where reloads read it (`None`: the running configuration again, so only the TLS files
    /// are read anew: an embedding without a config file).
    pub fn start(
        source: Option<Source>,
        running: Config,
        waker: Arc<Waker>,
    ) -> std::io::Result<Reloader> {
        let (requests, rx) = sync_channel(1);
        let (tx, outcomes) = sync_channel(OUTCOMES);
        std::thread::Builder::new()
            .name("rakit-reload".into())
            .spawn(move || serve(&rx, &tx, source, running, &waker))?;
        Ok(Reloader { requests, outcomes })
    }

    /// Asks for a reload; never blocks. Returns false when one was already waiting (this
    /// request is folded into it).
    pub fn request(&self) -> bool {
        match self.requests.try_send(()) {
            Ok(()) => true,
            Err(TrySendError::Full(())) => false,
            Err(TrySendError::Disconnected(())) => {
                log::error!("SIGHUP: the reload thread is gone; restart to change the config");
                false
            }
        }
    }

    /// The next finished reload, if any; never blocks.
    pub fn take(&self) -> Option<Outcome> {
        self.outcomes.try_recv().ok()
    }
}

/// The thread: one reload per request, against its own copy of what the loop runs with (the
/// loop applies every `Apply`, in order).
fn serve(
    requests: &Receiver<()>,
    outcomes: &SyncSender<Outcome>,
    source: Option<Source>,
    mut running: Config,
    waker: &Waker,
) {
    while requests.recv().is_ok() {
        let outcome = match reload(source.as_ref(), &running) {
            Ok(reloaded) => {
                running.clone_from(&reloaded.plan.config);
                Outcome::Apply(Box::new(reloaded))
            }
            Err(reason) => Outcome::Refused(reason),
        };
        // Blocks only while the loop has OUTCOMES unread; gone means the loop ended.
        if outcomes.send(outcome).is_err() {
            return;
        }
        if let Err(e) = waker.wake() {
            log::error!("SIGHUP: cannot wake the event loop: {e}");
        }
    }
}

fn reload(source: Option<&Source>, running: &Config) -> Result<Reloaded, String> {
    let (fresh, from) = match source {
        Some(source) => (source.load()?, source.describe()),
        None => {
            running.validate().map_err(|e| e.to_string())?;
            (running.clone(), "the running configuration".to_owned())
        }
    };
    let plan = plan(running, &fresh).map_err(|e| format!("{from}: {e}"))?;
    let tls = match plan.config.tls.files() {
        Some((cert, key)) => Some(crate::transport::load(cert, key).map_err(|e| e.to_string())?),
        None => None,
    };
    Ok(Reloaded { plan, tls, from })
}
