//! Pusher's HTTP API under `/apps/{app_id}/` (SPEC section 13), with its request signing.
//!
//! A request is signed over `METHOD\nPATH\nQUERY`, QUERY being every parameter but
//! `auth_signature`, keys lowercased and sorted, values decoded, joined as `k=v&k=v`; a body
//! is bound by `body_md5`. Checks, in order: the app (404), the signature's parameters and
//! value (401, compared in constant time), then the request itself (400, 413).

use std::collections::BTreeMap;
use std::time::Instant;

use md5::{Digest, Md5};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{json, Map, Value};

use super::{auth, wire, Pusher, MAX_EVENT_NAME, MAX_EVENT_SIZE};
use crate::router::{ChannelEvent, Outbox, Router};

/// `auth_timestamp` may be this far from our clock (Pusher's rule).
const MAX_CLOCK_SKEW: u64 = 600;
/// Channels of one `POST /events` (Pusher's limit).
const MAX_CHANNELS: usize = 100;
/// Events of one `POST /batch_events` (Pusher's limit).
const MAX_BATCH: usize = 10;

/// An answer: status and JSON body.
pub type Answer = (u16, String);

/// Whether `path` is Pusher's API.
pub fn wants(path: &str) -> bool {
    path.starts_with("/apps/")
}

/// One request to the API.
pub struct Request<'a> {
    pub method: &'a str,
    /// Still percent-encoded, as signed.
    pub path: &'a str,
    pub query: Option<&'a str>,
    pub body: &'a [u8],
}

fn error(status: u16, text: &str) -> Answer {
    (status, json!({ "error": text }).to_string())
}

impl Pusher {
    /// Answers one API request; events go out through `out`.
    pub fn api(
        &mut self,
        router: &mut Router,
        req: &Request<'_>,
        now_unix: u64,
        now: Instant,
        out: &mut dyn Outbox,
    ) -> Answer {
        let Some(rest) = req.path.strip_prefix("/apps/") else {
            return error(404, "Not found");
        };
        let (app, rest) = rest.split_once('/').unwrap_or((rest, ""));
        if app != self.app_id {
            return error(404, "Unknown app");
        }
        let params = match query_params(req.query.unwrap_or_default()) {
            Some(params) => params,
            None => return error(400, "Malformed query string"),
        };
        if let Err(text) = self.check_signature(req, &params, now_unix) {
            return error(401, text);
        }
        let segments: Vec<&str> = rest.split('/').collect();
        match (req.method, segments.as_slice()) {
            ("POST", ["events"]) => self.events(router, req.body, out),
            ("POST", ["batch_events"]) => self.batch_events(router, req.body, out),
            ("GET", ["channels"]) => channels(router, &params),
            ("GET", ["channels", name]) => channel(router, name, &params),
            ("GET", ["channels", name, "users"]) => users(router, name),
            ("POST", ["users", user, "terminate_connections"]) => {
                let _ = now;
                self.terminate(router, user, out)
            }
            (_, ["events" | "batch_events" | "channels" | "users", ..]) => {
                error(405, "Method not allowed")
            }
            _ => error(404, "Not found"),
        }
    }

    fn check_signature(
        &self,
        req: &Request<'_>,
        params: &BTreeMap<String, String>,
        now_unix: u64,
    ) -> Result<(), &'static str> {
        let get = |k: &str| params.get(k).map(String::as_str);
        if get("auth_key") != Some(self.key.as_str()) {
            return Err("Unknown auth_key");
        }
        if get("auth_version") != Some("1.0") {
            return Err("auth_version must be 1.0");
        }
        let ts: u64 = get("auth_timestamp")
            .and_then(|t| t.parse().ok())
            .ok_or("Missing auth_timestamp")?;
        if ts.abs_diff(now_unix) > MAX_CLOCK_SKEW {
            return Err(
                "Timestamp expired: auth_timestamp more than 600 s from the server's clock",
            );
        }
        if !req.body.is_empty() || get("body_md5").is_some() {
            let md5 = auth::hex(&Md5::digest(req.body));
            if get("body_md5") != Some(md5.as_str()) {
                return Err("body_md5 does not match the body");
            }
        }
        let signature = get("auth_signature").ok_or("Missing auth_signature")?;
        let query = params
            .iter()
            .filter(|(k, _)| k.as_str() != "auth_signature")
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("&");
        let signed = format!("{}\n{}\n{}", req.method, req.path, query);
        // verify_hex joins parts with ':'; one part is the whole text.
        if auth::verify_hex(&self.secret, &[&signed], signature) {
            Ok(())
        } else {
            Err("Invalid signature: you should have sent HmacSHA256Hex(secret, METHOD\\nPATH\\nQUERY)")
        }
    }

    fn events(&mut self, router: &mut Router, body: &[u8], out: &mut dyn Outbox) -> Answer {
        let Ok(ev) = serde_json::from_slice::<Event<'_>>(body) else {
            return error(
                400,
                "Invalid JSON: expected {name, data, channels or channel}",
            );
        };
        let channels: Vec<&str> = match (&ev.channels, ev.channel) {
            (Some(list), _) => list.iter().map(|c| &**c).collect(),
            (None, Some(c)) => vec![c],
            (None, None) => return error(400, "Missing channels"),
        };
        if channels.is_empty() || channels.len() > MAX_CHANNELS {
            return error(400, "1 to 100 channels per event");
        }
        if let Err(answer) = check_event(&ev, &channels) {
            return answer;
        }
        self.publish(router, &ev, &channels, out);
        (200, "{}".to_owned())
    }

    fn batch_events(&mut self, router: &mut Router, body: &[u8], out: &mut dyn Outbox) -> Answer {
        let Ok(batch) = serde_json::from_slice::<Batch<'_>>(body) else {
            return error(400, "Invalid JSON: expected {batch: [...]}");
        };
        if batch.batch.len() > MAX_BATCH {
            return error(400, "At most 10 events per batch");
        }
        for ev in &batch.batch {
            let Some(channel) = ev.channel else {
                return error(400, "Every batch event needs a channel");
            };
            if let Err(answer) = check_event(ev, &[channel]) {
                return answer;
            }
        }
        for ev in &batch.batch {
            if let Some(channel) = ev.channel {
                self.publish(router, ev, &[channel], out);
            }
        }
        (200, "{}".to_owned())
    }

    fn publish(
        &self,
        router: &mut Router,
        ev: &Event<'_>,
        channels: &[&str],
        out: &mut dyn Outbox,
    ) {
        let data = wire::data_value(&ev.data);
        for channel in channels {
            let event = ChannelEvent {
                channel,
                event: Some(&ev.name),
                data: &data,
                client_id: None,
                user_id: None,
            };
            // The socket is skipped on whichever node it is: its id travels with the event.
            match ev.socket_id {
                Some(socket_id) => router.fan_out_but(&event, socket_id, &mut &mut *out),
                None => router.fan_out(&event, None, &mut &mut *out),
            }
        }
    }

    /// Closes every connection signed in as `user` (`pusher:signin`) with 4009, which pusher-js
    /// takes as "do not reconnect", on every node: this node's at once, the others' when they
    /// hear of it (the answer does not wait for them). As Pusher documents it, a connection that
    /// is only on a presence channel as that user is left alone; an unknown user is no error
    /// (`200 {}`).
    fn terminate(&self, router: &mut Router, user: &str, out: &mut dyn Outbox) -> Answer {
        let Some(user) = crate::percent::decode_strict(user) else {
            return error(400, "Malformed user id");
        };
        self.terminate_local(&user, out);
        router.terminate_everywhere(&user);
        (200, "{}".to_owned())
    }

    /// Closes this node's connections signed in as `user` with 4009 (for `terminate_connections`
    /// given here or on another node).
    pub fn terminate_local(&self, user: &str, out: &mut dyn Outbox) {
        for conn in self.signed_in.conns(user) {
            out.close(conn, super::close::KICK, "terminated by the server");
        }
    }
}

/// One event of `POST /events` or of a batch.
#[derive(Deserialize)]
struct Event<'a> {
    #[serde(borrow)]
    name: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    data: std::borrow::Cow<'a, str>,
    #[serde(borrow, default)]
    channels: Option<Vec<std::borrow::Cow<'a, str>>>,
    #[serde(borrow, default)]
    channel: Option<&'a str>,
    #[serde(borrow, default)]
    socket_id: Option<&'a str>,
    #[serde(borrow, default)]
    #[allow(dead_code)]
    info: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct Batch<'a> {
    #[serde(borrow)]
    batch: Vec<Event<'a>>,
}

fn check_event(ev: &Event<'_>, channels: &[&str]) -> Result<(), Answer> {
    if ev.name.is_empty() || ev.name.chars().count() > MAX_EVENT_NAME {
        return Err(error(400, "Event names are 1 to 200 characters"));
    }
    // pusher-js acts on these itself (a fake `pusher_internal:member_added` adds a member);
    // Pusher refuses them with this message.
    if ["pusher:", "pusher_internal:"]
        .iter()
        .any(|p| ev.name.starts_with(p))
    {
        return Err(error(
            400,
            "The 'pusher' namespace is reserved for internal usage",
        ));
    }
    if ev.data.len() > MAX_EVENT_SIZE {
        return Err(error(413, "Event data over 10 KB"));
    }
    if let Some(bad) = channels.iter().find(|c| !wire::valid_channel(c)) {
        return Err(error(400, &format!("Invalid channel name: {bad}")));
    }
    Ok(())
}

/// `GET /channels/{name}/users`: the presence channel's users in the cluster.
fn users(router: &Router, channel: &str) -> Answer {
    let Some(channel) = crate::percent::decode_strict(channel) else {
        return error(400, "Malformed channel name");
    };
    if !channel.starts_with("presence-") {
        return error(400, "Users can only be listed for presence channels");
    }
    let users: Vec<Value> = router
        .channel_users(&channel)
        .map(|(id, _)| json!({ "id": id }))
        .collect();
    (200, json!({ "users": users }).to_string())
}

/// `GET /channels`: channels occupied anywhere in the cluster, optionally by prefix, with
/// `user_count` for presence.
fn channels(router: &Router, params: &BTreeMap<String, String>) -> Answer {
    let prefix = params.get("filter_by_prefix").map_or("", String::as_str);
    let user_count = info_has(params, "user_count");
    if user_count && !prefix.starts_with("presence-") {
        return error(400, "info=user_count needs filter_by_prefix=presence-");
    }
    let mut list = Map::new();
    for info in router.channel_list() {
        if info.name.starts_with(prefix) {
            let mut attrs = Map::new();
            if user_count {
                attrs.insert("user_count".into(), router.user_count(info.name).into());
            }
            list.insert(info.name.to_owned(), Value::Object(attrs));
        }
    }
    (200, json!({ "channels": list }).to_string())
}

/// `GET /channels/{name}`: `occupied`, and `subscription_count` / `user_count` when asked, all
/// over the cluster.
fn channel(router: &Router, name: &str, params: &BTreeMap<String, String>) -> Answer {
    let Some(name) = crate::percent::decode_strict(name).filter(|n| wire::valid_channel(n)) else {
        return error(400, "Invalid channel name");
    };
    let subscribers = router.subscriber_count(&name);
    let mut body = Map::new();
    body.insert("occupied".into(), (subscribers > 0).into());
    if info_has(params, "subscription_count") {
        body.insert("subscription_count".into(), subscribers.into());
    }
    if info_has(params, "user_count") {
        if !name.starts_with("presence-") {
            return error(400, "user_count is for presence channels only");
        }
        body.insert("user_count".into(), router.user_count(&name).into());
    }
    (200, Value::Object(body).to_string())
}

fn info_has(params: &BTreeMap<String, String>, attr: &str) -> bool {
    params
        .get("info")
        .is_some_and(|i| i.split(',').any(|a| a.trim() == attr))
}

/// The query's parameters, keys lowercased, values percent-decoded (`+` is a space).
fn query_params(query: &str) -> Option<BTreeMap<String, String>> {
    let mut params = BTreeMap::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let k = crate::percent::decode_strict(&k.replace('+', " "))?.to_ascii_lowercase();
        params.insert(k, crate::percent::decode_strict(&v.replace('+', " "))?);
    }
    Some(params)
}

#[cfg(test)]
mod tests;
