// Runs the documentation's "Basic Chat" example (basic_chat.js, verbatim but
// for the port in its URL) in two headless Chromium tabs against a running
// daemon, with a session cookie set, and prints what each tab logged as JSON.
//
//   node basic_chat.mjs http://127.0.0.1:PORT TOKEN [COOKIE_NAME]
//
// Steps, each awaited on the tabs' console output (no fixed sleeps):
//   1. tab1 opens the chat: it logs its welcome and its own Hello!
//   2. tab2 opens the chat: it logs its own Hello!, tab1 logs tab2's Hello!
//      and a presence listing both connections
//   3. tab1 reloads (a new connection that says Hello! again): tab2 logs
//      tab1's new Hello! and a presence listing both live connections
// So each tab logs its own and the other tab's Hello!. tests/browser.rs
// checks the details of the summary; this script exits non-zero (still
// printing the summary) when a step does not happen in time.
//
// Output: {"ok":bool,"error":string|null,"tabs":{"tab1":[LINE...],"tab2":[...]}}
// with LINE = {"run":N,"label":"Message:"|"Online users:"|...,"value":V,"text":T}
// where `run` counts the tab's page loads (1, 2, ...) and `value` is the
// logged object (console.log's second argument) as JSON.

import { readFileSync } from 'node:fs';
import { chromium } from 'playwright-core';

const STEP_TIMEOUT_MS = 15000;
const DOC_URL = 'ws://127.0.0.1:6001';

const [base, token, cookieName = 'rakit_ws_session'] = process.argv.slice(2);
if (!base || !token) {
  console.error('usage: node basic_chat.mjs http[s]://127.0.0.1:PORT TOKEN [COOKIE_NAME]');
  process.exit(2);
}
const port = new URL(base).port;
// Over TLS (an https:// base) the page connects with wss://; the test's CA is
// not one Chromium knows, so certificate errors are ignored.
const tls = base.startsWith('https:');

// The example as the documentation writes it; only the port changes.
const doc = readFileSync(new URL('./basic_chat.js', import.meta.url), 'utf8');
if (doc.split(DOC_URL).length !== 2) {
  console.error(`basic_chat.js must contain ${DOC_URL} exactly once`);
  process.exit(2);
}
const script = doc.replace(DOC_URL, `${tls ? 'wss' : 'ws'}://127.0.0.1:${port}`);

const tabs = { tab1: [], tab2: [] };
const runs = { tab1: 0, tab2: 0 };
let error = null;
let browser;

function print(ok) {
  process.stdout.write(JSON.stringify({ ok, error, tabs }) + '\n');
}

// Records every console line of `page` under `name`, tagged with the run.
function record(page, name) {
  page.on('console', async (msg) => {
    const run = runs[name];
    const line = { run, label: null, value: null, text: msg.text() };
    tabs[name].push(line); // in arrival order, even if values resolve later
    try {
      const args = await Promise.all(msg.args().map((a) => a.jsonValue()));
      line.label = typeof args[0] === 'string' ? args[0] : null;
      line.value = args.length > 1 ? args[1] : null;
    } catch (e) {
      line.label = 'unreadable';
      line.value = String(e);
    }
  });
  page.on('pageerror', (e) => tabs[name].push({ run: runs[name], label: 'pageerror', value: String(e), text: String(e) }));
}

async function waitFor(what, predicate) {
  const deadline = Date.now() + STEP_TIMEOUT_MS;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

const messages = (name, run) =>
  tabs[name].filter((l) => l.label === 'Message:' && (run === undefined || l.run === run)).map((l) => l.value);
const welcomeId = (name, run) => messages(name, run).find((m) => m && m.type === 'welcome')?.client_id;
const saidHello = (name, run, from) =>
  messages(name, run).some((m) => m && m.type === 'message' && m.message === 'Hello!' && m.client_id === from);
const presenceIds = (name, run) => {
  const all = tabs[name].filter((l) => l.label === 'Online users:' && l.run === run);
  const last = all[all.length - 1];
  return last && Array.isArray(last.value) ? last.value.map((u) => u.id) : [];
};
const sameIds = (a, b) => a.length === b.length && a.every((x, i) => x === b[i]);

// Opens (or reopens) the chat in `page`: an origin on the daemon's host so the
// cookie goes with the upgrade, then the documented script.
async function openChat(page, name) {
  runs[name] += 1;
  await page.goto(`${base}/health`);
  await page.addScriptTag({ content: script });
}

try {
  browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    headless: true,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--no-first-run',
      ...(tls ? ['--ignore-certificate-errors'] : []),
    ],
  });
  const context = await browser.newContext({ ignoreHTTPSErrors: tls });
  await context.addCookies([{ name: cookieName, value: token, url: base }]);
  const page1 = await context.newPage();
  const page2 = await context.newPage();
  record(page1, 'tab1');
  record(page2, 'tab2');

  await openChat(page1, 'tab1');
  await waitFor('tab1 welcome', () => welcomeId('tab1', 1));
  const a1 = welcomeId('tab1', 1);
  await waitFor('tab1 own Hello!', () => saidHello('tab1', 1, a1));

  await openChat(page2, 'tab2');
  await waitFor('tab2 welcome', () => welcomeId('tab2', 1));
  const b = welcomeId('tab2', 1);
  await waitFor('tab2 own Hello!', () => saidHello('tab2', 1, b));
  await waitFor("tab1 sees tab2's Hello!", () => saidHello('tab1', 1, b));
  await waitFor('tab1 presence with both tabs', () => sameIds(presenceIds('tab1', 1), [a1, b]));

  await openChat(page1, 'tab1');
  await waitFor('tab1 welcome after reload', () => welcomeId('tab1', 2));
  const a2 = welcomeId('tab1', 2);
  await waitFor('tab1 own Hello! after reload', () => saidHello('tab1', 2, a2));
  await waitFor("tab2 sees tab1's Hello!", () => saidHello('tab2', 1, a2));
  await waitFor('tab2 presence with both live tabs', () => sameIds(presenceIds('tab2', 1), [b, a2]));
  await waitFor('tab1 presence with both live tabs', () => sameIds(presenceIds('tab1', 2), [b, a2]));
  print(true);
} catch (e) {
  error = String(e && e.stack ? e.stack : e);
  print(false);
  process.exitCode = 1;
} finally {
  if (browser) await browser.close().catch(() => {});
}
