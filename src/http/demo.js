"use strict";
// The demo page's own script (SPEC 14). The daemon serves the page with the browser client of
// SPEC 16.2 (clients/js/rakit-websocket.js, also at /rakit-websocket.js) inlined before it, so
// the page stays self-contained: src/http/mod.rs puts demo.html, the client and this together.
// The client reconnects with backoff and resubscribes the page's channels on its own.
// Everything shown comes from the network, so it is only ever set with textContent.
const $ = (id) => document.getElementById(id);
const MAX_LOG = 200;
const rt = new RakitWebSocket();
const subs = new Map();

function text(value) {
  return typeof value === "string" ? value : JSON.stringify(value);
}

function log(type, from, body) {
  const li = document.createElement("li");
  li.dataset.type = type;
  const kind = document.createElement("span");
  kind.className = "kind";
  kind.textContent = type;
  li.append(kind);
  if (from) {
    const who = document.createElement("span");
    who.className = "from";
    who.textContent = from;
    li.append(who);
  }
  const content = document.createElement("span");
  content.className = "text";
  content.textContent = body;
  li.append(content);
  const list = $("log");
  list.prepend(li);
  while (list.children.length > MAX_LOG) list.lastChild.remove();
}

function showPresence(msg) {
  $("count").textContent = String(msg.count);
  const list = $("presence");
  list.replaceChildren();
  if (msg.truncated) {
    const li = document.createElement("li");
    li.textContent = "(too many to list)";
    list.append(li);
    return;
  }
  for (const user of msg.users) {
    const li = document.createElement("li");
    li.dataset.id = user.id;
    const id = document.createElement("span");
    id.className = "id";
    id.textContent = user.id;
    const name = document.createElement("span");
    name.className = "name";
    name.textContent = " " + user.name;
    li.append(id, name);
    list.append(li);
  }
}

// Channels with presence (their namespace's `presence = true`): members by channel, in
// subscription order, from `subscribed`, `join` and `leave`. The box shows the channel named in
// the channel field.
const members = new Map();

function showMembers() {
  const channel = $("channel-name").value;
  const state = members.get(channel);
  $("members-box").hidden = !state;
  if (!state) return;
  $("members-channel").textContent = "#" + channel;
  $("members-count").textContent = state.truncated ? "many" : String(state.list.length);
  const list = $("members");
  list.replaceChildren();
  if (state.truncated) {
    const li = document.createElement("li");
    li.textContent = "(too many to list)";
    list.append(li);
    return;
  }
  for (const member of state.list) {
    const li = document.createElement("li");
    li.dataset.id = member.client_id;
    const id = document.createElement("span");
    id.className = "id";
    id.textContent = member.client_id;
    const name = document.createElement("span");
    name.className = "name";
    name.textContent = " " + (member.user ? member.user.name : "Guest");
    li.append(id, name);
    list.append(li);
  }
}

rt.on("state", (state, info) => {
  const open = state === "connected";
  $("status").textContent = state === "disconnected" && info.delay !== undefined
    ? "disconnected (" + info.code + "), reconnecting" : state;
  $("status").dataset.state = open ? "open" : state === "connecting" ? "connecting" : "closed";
  if (!open) {
    $("me").textContent = "…";
    delete $("me").dataset.id;
    members.clear();
    showMembers();
  }
});
rt.on("welcome", (msg) => {
  $("me").textContent = msg.client_id;
  $("me").dataset.id = msg.client_id;
  log("welcome", msg.client_id, msg.user ? "signed in as " + msg.user.name : "guest");
});
rt.on("presence", showPresence);
rt.on("message", (message, meta) => log("message", meta.client_id || "server", text(message)));
rt.on("private", (message, meta) => log("private", meta.client_id || "server", text(message)));
rt.on("error", (msg) => log("error", msg.code, msg.message));

function sent(ok) {
  if (!ok) log("error", "", "not connected");
}

function subscribe(name) {
  if (subs.has(name)) return log("error", "", "already subscribed to #" + name);
  subs.set(name, rt.subscribe(name, {
    onSubscribed: (msg) => {
      log("subscribed", "", "#" + name);
      if (Array.isArray(msg.presence)) members.set(name, { list: msg.presence.slice(), truncated: !!msg.truncated });
      showMembers();
    },
    onMessage: (data, meta) => log("channel", "#" + name + " " + (meta.client_id || "server"), text(data)),
    onJoin: (member) => {
      log("join", "#" + name + " " + member.client_id, member.user ? member.user.name : "Guest");
      const state = members.get(name);
      if (state && !state.list.some((m) => m.client_id === member.client_id)) state.list.push(member);
      showMembers();
    },
    onLeave: (member) => {
      log("leave", "#" + name + " " + member.client_id, member.user ? member.user.name : "Guest");
      const state = members.get(name);
      if (state) state.list = state.list.filter((m) => m.client_id !== member.client_id);
      showMembers();
    },
  }));
}

function unsubscribe(name) {
  const sub = subs.get(name);
  if (!sub) return log("error", "", "not subscribed to #" + name);
  sub.unsubscribe();
  subs.delete(name);
  members.delete(name);
  showMembers();
  log("unsubscribed", "", "#" + name);
}

// Publishing does not need a subscription (SPEC 5); a subscribed channel goes through it.
function publish(name, data) {
  const sub = subs.get(name);
  return sub ? sub.publish(data) : rt.send({ event: "message", channel: name, data });
}

function onSubmit(form, input, act) {
  $(form).addEventListener("submit", (e) => {
    e.preventDefault();
    const value = $(input).value;
    if (value === "") return;
    sent(act(value));
    $(input).value = "";
  });
}

onSubmit("broadcast-form", "broadcast-text", (message) => rt.broadcast(message));
onSubmit("publish-form", "publish-text", (data) => publish($("channel-name").value, data));
onSubmit("private-form", "private-text", (message) => rt.privateMessage($("private-to").value.trim(), message));
$("channel-form").addEventListener("submit", (e) => e.preventDefault());
$("subscribe").addEventListener("click", () => subscribe($("channel-name").value));
$("unsubscribe").addEventListener("click", () => unsubscribe($("channel-name").value));
$("channel-name").addEventListener("input", showMembers);
// Clicking a user (or a channel member) fills in the private message recipient.
for (const list of ["presence", "members"]) {
  $(list).addEventListener("click", (e) => {
    const li = e.target.closest("li[data-id]");
    if (li) $("private-to").value = li.dataset.id;
  });
}
