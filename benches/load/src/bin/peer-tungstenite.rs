//! The peer users would write instead: a tokio-tungstenite server speaking
//! the same tiny protocol as rakit (SPEC section 5, the subset the benches
//! use), written the usual way: a task per client reading, a writer task per
//! client fed by an unbounded mpsc queue, one `Mutex` around the shared
//! tables, JSON by serde_json, each fan-out message serialised once and
//! cloned (a cheap `Bytes` clone) into every recipient's queue.
//!
//! ```text
//! peer-tungstenite [--port 0] [--echo] [--current-thread]
//! ```
//! Prints `peer-tungstenite listening on ws://ADDR`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use futures_util::stream::SplitSink;
use futures_util::{SinkExt, StreamExt};
use rakit_load::Args;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

type Ws = WebSocketStream<TcpStream>;

struct Client {
    tx: UnboundedSender<Message>,
}

#[derive(Default)]
struct Shared {
    clients: HashMap<u64, Client>,
    /// Channel -> subscribers in subscription order.
    channels: HashMap<String, Vec<u64>>,
}

#[derive(Deserialize)]
struct Incoming {
    event: Option<String>,
    channel: Option<String>,
    data: Option<Value>,
    message: Option<Value>,
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
enum Out<'a> {
    Welcome {
        client_id: &'a str,
    },
    Subscribed {
        channel: &'a str,
    },
    Channel {
        channel: &'a str,
        client_id: &'a str,
        data: &'a Value,
    },
    Message {
        client_id: &'a str,
        message: &'a Value,
    },
    Error {
        code: &'a str,
        message: &'a str,
    },
}

fn text(out: &Out<'_>) -> Message {
    Message::text(serde_json::to_string(out).expect("serialisable"))
}

static NEXT: AtomicU64 = AtomicU64::new(1);

fn main() {
    let args = Args::from_env(1);
    let port: u16 = args.num("port", 0);
    let echo = args.flag("echo");
    let current = args.flag("current-thread");
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let rt = if current {
        tokio::runtime::Builder::new_current_thread()
    } else {
        tokio::runtime::Builder::new_multi_thread()
    }
    .enable_all()
    .build()
    .expect("runtime");
    rt.block_on(serve(port, echo, current));
}

async fn serve(port: u16, echo: bool, current: bool) {
    let listener = TcpListener::bind(("127.0.0.1", port)).await.expect("bind");
    println!(
        "peer-tungstenite listening on ws://{} ({}{})",
        listener.local_addr().expect("addr"),
        if current {
            "current_thread"
        } else {
            "multi_thread"
        },
        if echo { ", echo mode" } else { "" }
    );
    let shared = Arc::new(Mutex::new(Shared::default()));
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                eprintln!("accept: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let shared = Arc::clone(&shared);
        tokio::spawn(async move {
            let Ok(ws) = tokio_tungstenite::accept_async(stream).await else {
                return;
            };
            if echo {
                echo_client(ws).await;
            } else {
                client(ws, shared).await;
            }
        });
    }
}

async fn echo_client(mut ws: Ws) {
    while let Some(Ok(msg)) = ws.next().await {
        if (msg.is_text() || msg.is_binary()) && ws.send(msg).await.is_err() {
            return;
        }
    }
}

/// The writer task: sends what the queue holds, flushing once per batch.
async fn writer(mut sink: SplitSink<Ws, Message>, mut rx: UnboundedReceiver<Message>) {
    while let Some(msg) = rx.recv().await {
        if sink.feed(msg).await.is_err() {
            return;
        }
        while let Ok(msg) = rx.try_recv() {
            if sink.feed(msg).await.is_err() {
                return;
            }
        }
        if sink.flush().await.is_err() {
            return;
        }
    }
}

async fn client(ws: Ws, shared: Arc<Mutex<Shared>>) {
    let key = NEXT.fetch_add(1, Ordering::Relaxed);
    let id = format!("{key:08}");
    let (sink, mut stream) = ws.split();
    let (tx, rx) = unbounded_channel();
    let _ = tx.send(text(&Out::Welcome { client_id: &id }));
    shared
        .lock()
        .unwrap()
        .clients
        .insert(key, Client { tx: tx.clone() });
    let writer = tokio::spawn(writer(sink, rx));
    while let Some(Ok(msg)) = stream.next().await {
        let Message::Text(t) = msg else {
            if msg.is_close() {
                break;
            }
            continue;
        };
        let incoming: Incoming = match serde_json::from_str(t.as_str()) {
            Ok(m) => m,
            Err(_) => {
                let _ = tx.send(text(&Out::Error {
                    code: "invalid_json",
                    message: "not JSON",
                }));
                continue;
            }
        };
        route(key, &id, incoming, &tx, &shared);
    }
    {
        let mut s = shared.lock().unwrap();
        s.clients.remove(&key);
        s.channels.retain(|_, members| {
            members.retain(|m| *m != key);
            !members.is_empty()
        });
    }
    drop(tx);
    writer.abort();
}

fn route(key: u64, id: &str, msg: Incoming, tx: &UnboundedSender<Message>, shared: &Mutex<Shared>) {
    match (msg.event.as_deref(), msg.channel.as_deref()) {
        (Some("subscribe"), Some(channel)) => {
            let mut s = shared.lock().unwrap();
            let members = s.channels.entry(channel.to_owned()).or_default();
            if !members.contains(&key) {
                members.push(key);
            }
            let _ = tx.send(text(&Out::Subscribed { channel }));
        }
        (Some("message"), Some(channel)) => {
            let data = msg.data.unwrap_or(Value::Null);
            let frame = text(&Out::Channel {
                channel,
                client_id: id,
                data: &data,
            });
            let s = shared.lock().unwrap();
            if let Some(members) = s.channels.get(channel) {
                for m in members {
                    if let Some(c) = s.clients.get(m) {
                        let _ = c.tx.send(frame.clone());
                    }
                }
            }
        }
        (None, _) if msg.message.is_some() => {
            let message = msg.message.unwrap_or(Value::Null);
            let frame = text(&Out::Message {
                client_id: id,
                message: &message,
            });
            let s = shared.lock().unwrap();
            for c in s.clients.values() {
                let _ = c.tx.send(frame.clone());
            }
        }
        _ => {
            let _ = tx.send(text(&Out::Error {
                code: "bad_request",
                message: "unsupported by this peer",
            }));
        }
    }
}
