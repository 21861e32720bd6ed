//! The embeddable server: configuration in, a bound listener, and a
//! blocking `run` on the calling thread (see [`Server`]).

use std::io;
use std::net::SocketAddr;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use mio::net::TcpListener;
use mio::{Interest, Poll, Waker};

use crate::cluster::{Cluster, Settings as ClusterSettings};
use crate::config::Config;
pub use crate::error::ServerError;
use crate::event_loop::{EventLoop, LISTENER, SIGNALS, WAKER};
use crate::events::{Both, Handler, LogHandler};
use crate::reload::Source;
use crate::webhooks::{random_node_id, Hooks};

/// How long queued webhook events may take to go out at shutdown.
const WEBHOOK_GRACE: Duration = Duration::from_secs(2);
use crate::router::{Router, RouterConfig, TokenKey};

/// Builds a server: configuration, mode and event handler.
///
/// ```no_run
/// use rakit::config::Config;
/// use rakit::events::Handler;
/// use rakit::session::User;
/// use rakit::Server;
///
/// struct Audit;
/// impl Handler for Audit {
///     fn connect(&mut self, client_id: &str, user: Option<&User>) {
///         println!("{client_id} joined as {:?}", user.map(|u| &u.name));
///     }
/// }
///
/// let config = Config { port: 0, ..Config::default() };
/// let server = Server::new(config).handler(Audit).bind()?;
/// println!("listening on {}", server.local_addr());
/// let stop = server.shutdown_handle();
/// std::thread::spawn(move || {
///     std::thread::sleep(std::time::Duration::from_secs(60));
///     stop.shutdown();
/// });
/// server.run()?;
/// # Ok::<(), rakit::ServerError>(())
/// ```
pub struct Server {
    config: Config,
    echo: bool,
    signals: bool,
    reload: Option<Source>,
    handler: Box<dyn Handler>,
}

impl Server {
    /// A server with `config`, the logging handler, no signal handling.
    pub fn new(config: Config) -> Server {
        Server {
            config,
            echo: false,
            signals: false,
            reload: None,
            handler: Box::new(LogHandler),
        }
    }

    /// Echo mode (conformance testing): every message comes back unchanged.
    pub fn echo(mut self, on: bool) -> Server {
        self.echo = on;
        self
    }

    /// Shut down gracefully on SIGINT and SIGTERM, and reload the configuration on SIGHUP
    /// (the daemon does; see [`Server::reload_from`]).
    pub fn handle_signals(mut self, on: bool) -> Server {
        self.signals = on;
        self
    }

    /// Where SIGHUP reads the configuration again (SPEC section 18). Without it, SIGHUP only
    /// reads the TLS files again.
    pub fn reload_from(mut self, source: Source) -> Server {
        self.reload = Some(source);
        self
    }

    /// The handler that receives the server's events.
    pub fn handler(mut self, handler: impl Handler + 'static) -> Server {
        self.handler = Box::new(handler);
        self
    }

    /// Binds the listen address; the server runs when [`Bound::run`] is called.
    pub fn bind(self) -> Result<Bound, ServerError> {
        let addr_text = format!("{}:{}", self.config.host, self.config.port);
        let std_listener = listen(&addr_text, self.config.cluster.reuse_port).map_err(|error| {
            ServerError::Bind {
                addr: addr_text.clone(),
                error,
            }
        })?;
        let io_err = |context| move |error| ServerError::Io { context, error };
        std_listener
            .set_nonblocking(true)
            .map_err(io_err("setting the listener non-blocking"))?;
        let local_addr = std_listener
            .local_addr()
            .map_err(io_err("reading the listen address"))?;
        let mut listener = TcpListener::from_std(std_listener);
        let poll = Poll::new().map_err(io_err("creating the poll"))?;
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)
            .map_err(io_err("registering the listener"))?;
        let waker =
            Arc::new(Waker::new(poll.registry(), WAKER).map_err(io_err("creating the waker"))?);
        let signals = if self.signals {
            let mut signals = signal_hook_mio::v1_0::Signals::new([
                signal_hook::consts::SIGINT,
                signal_hook::consts::SIGTERM,
                signal_hook::consts::SIGHUP,
            ])
            .map_err(io_err("installing signal handlers"))?;
            poll.registry()
                .register(&mut signals, SIGNALS, Interest::READABLE)
                .map_err(io_err("registering signals"))?;
            Some(signals)
        } else {
            None
        };
        if let Some(warning) = crate::accept::cookie_origin_warning(&self.config) {
            log::warn!("{warning}");
        }
        if let Some(warning) = self.config.namespaces_warning() {
            log::warn!("{warning}");
        }
        // Webhooks (SPEC section 10): a worker thread beside the loop, fed
        // through the router's event handler.
        // One id per process start, shared by webhooks and the cluster.
        let node = random_node_id();
        // A reload may turn them on later, so the router always gets the feed.
        let webhooks = Hooks::start(&self.config.webhooks, &self.config.pusher, node.clone())
            .map_err(io_err("starting the webhook worker"))?;
        let handler: Box<dyn Handler> = Box::new(Both(self.handler, webhooks.feed()));
        let mut router = Router::new(
            RouterConfig {
                max_channels_per_client: self.config.max_channels_per_client,
                presence: self.config.presence,
                presence_interval: Duration::from_millis(self.config.presence_interval_ms),
                presence_max_users: self.config.presence_max_users,
                command_policy: self.config.command_policy,
                limits: self.config.limits.router(),
                namespaces: Rc::new(self.config.namespaces()),
                token_key: TokenKey::new(self.config.session.secret.as_bytes()),
                max_token_size: self.config.max_handshake_size,
                history_max_memory: self.config.history.max_memory_bytes(),
                max_send_buffer: self.config.max_send_buffer,
                ..RouterConfig::default()
            },
            handler,
            random_seed(),
        );
        // Scale-out (SPEC section 11): Redis threads beside the loop, waking
        // it through the one waker.
        let cluster = match self.config.cluster.endpoint() {
            Some(endpoint) if self.config.cluster.enabled() => {
                router.enable_cluster(&node);
                let settings = ClusterSettings {
                    endpoint,
                    namespace: self.config.cluster.namespace.clone(),
                    node_timeout: Duration::from_millis(self.config.cluster.node_timeout_ms),
                    node,
                };
                Some(
                    Cluster::start(settings, Arc::clone(&waker))
                        .map_err(io_err("starting the cluster threads"))?,
                )
            }
            _ => None,
        };
        let tls = match self.config.tls.files() {
            Some((cert, key)) => Some(crate::transport::load(cert, key).map_err(ServerError::Tls)?),
            None => None,
        };
        let mut event_loop =
            EventLoop::new(self.config, self.echo, poll, listener, router, webhooks);
        if let Some(cluster) = cluster {
            event_loop.set_cluster(cluster);
        }
        event_loop.set_tls(tls);
        if signals.is_some() {
            event_loop
                .enable_reload(self.reload, Arc::clone(&waker))
                .map_err(io_err("starting the reload thread"))?;
        }
        Ok(Bound {
            event_loop,
            local_addr,
            signals,
            waker,
            stop: Arc::new(AtomicBool::new(false)),
        })
    }
}

/// Stops a running server from another thread, as SIGTERM would.
#[derive(Clone)]
pub struct ShutdownHandle {
    waker: Arc<Waker>,
    stop: Arc<AtomicBool>,
}

impl ShutdownHandle {
    /// Starts a graceful shutdown: close 1001 to every client, exit the loop.
    pub fn shutdown(&self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Err(e) = self.waker.wake() {
            log::error!("cannot wake the event loop: {e}");
        }
    }
}

/// A server bound to its address, ready to run.
pub struct Bound {
    event_loop: EventLoop,
    local_addr: SocketAddr,
    signals: Option<signal_hook_mio::v1_0::Signals>,
    waker: Arc<Waker>,
    stop: Arc<AtomicBool>,
}

impl Bound {
    /// The address the server listens on (with the real port when 0 was asked).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// A handle that shuts the server down from another thread.
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        ShutdownHandle {
            waker: Arc::clone(&self.waker),
            stop: Arc::clone(&self.stop),
        }
    }

    /// Runs until shutdown. A fatal error fires the handler's `crash` event
    /// before it is returned.
    pub fn run(mut self) -> Result<(), ServerError> {
        // A panic in `start` (user code) or in the loop itself is fatal:
        // there is no one client to blame and close.
        let result = match catch_unwind(AssertUnwindSafe(|| {
            self.event_loop.handler_mut().start(self.local_addr);
            self.event_loop.run(self.signals.as_mut(), &self.stop)
        })) {
            Ok(result) => result,
            Err(panic) => Err(ServerError::Panic(panic_message(&*panic))),
        };
        if let Err(e) = &result {
            self.event_loop.handler_mut().crash(e);
        }
        // What is queued for the backend gets up to 2 s (SPEC section 10).
        if let Some(hooks) = self.event_loop.take_webhooks() {
            if !hooks.shutdown(WEBHOOK_GRACE) {
                log::warn!("webhooks: undelivered events left at shutdown");
            }
        }
        result
    }
}

/// Connections the kernel completes and queues for `accept` (it caps this at
/// `net.core.somaxconn`). std's `TcpListener::bind` asks for 128, too few when
/// thousands of clients reconnect at once after a restart: the rest see SYN
/// drops and retry after a second or more.
pub const LISTEN_BACKLOG: i32 = 4096;

/// Binds and listens on the first address `addr` resolves to that works, as
/// std's `TcpListener::bind` does, but with [`LISTEN_BACKLOG`].
fn listen(addr: &str, reuse_port: bool) -> io::Result<std::net::TcpListener> {
    use std::net::ToSocketAddrs;
    let mut last_error = None;
    for addr in addr.to_socket_addrs()? {
        match listen_on(addr, reuse_port) {
            Ok(listener) => return Ok(listener),
            Err(e) => last_error = Some(e),
        }
    }
    Err(last_error.unwrap_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "could not resolve to any address",
        )
    }))
}

fn listen_on(addr: SocketAddr, reuse_port: bool) -> io::Result<std::net::TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    // As std does on Unix: a restarted daemon binds while its old
    // connections are still in TIME_WAIT.
    socket.set_reuse_address(true)?;
    // `[cluster] reuse_port`: several daemons on one port, the kernel
    // spreading new connections over them.
    if reuse_port {
        socket.set_reuse_port(true)?;
    }
    socket.bind(&addr.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    Ok(socket.into())
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".to_owned())
}

/// A seed for client ids: from the OS's randomness, via the standard
/// library's randomly keyed hasher, mixed with the time.
fn random_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.write_u32(std::process::id());
    h.finish()
}
