// Drives the demo chat page (src/http/demo.html, SPEC section 14) in two headless Chromium tabs
// and prints what each tab shows as JSON.
//
//   node demo_page.mjs http://HOST:PORT [API_KEY]
//
// BASE/ must serve the page and accept WebSocket upgrades. Steps, each awaited on the pages'
// DOM (no fixed sleeps):
//   1. both tabs open BASE/ and show their own client id in #me
//   2. both presence lists show both ids, in connection order, with their names
//   3. tab1 broadcasts a text with markup in it: both logs show it, as text
//   4. tab2 subscribes to "room"; tab1 publishes to "room": tab2 logs the channel message
//   5. tab2 sends tab1 a private message: tab1 logs it
//   6. with API_KEY: POST /api/commands broadcasts; both logs show it from "server"
// Output: {"ok":bool,"error":string|null,"me":{tab1,tab2},"presence":{tab1,tab2},
//          "logs":{tab1:[{type,from,text,markup}],tab2:[...]},"pageErrors":[...]}

import { chromium } from 'playwright-core';

const STEP_TIMEOUT_MS = 15000;
const [base, apiKey] = process.argv.slice(2);
if (!base) {
  console.error('usage: node demo_page.mjs http://HOST:PORT [API_KEY]');
  process.exit(2);
}

const summary = { ok: false, error: null, me: {}, presence: {}, logs: {}, pageErrors: [] };
let browser;

async function waitFor(page, what, fn, arg) {
  try {
    await page.waitForFunction(fn, arg, { timeout: STEP_TIMEOUT_MS, polling: 20 });
  } catch (e) {
    throw new Error(`timed out waiting for ${what}`);
  }
}

const logOf = (page) =>
  page.$$eval('#log li', (lis) =>
    lis.reverse().map((li) => ({
      type: li.dataset.type,
      from: li.querySelector('.from')?.textContent ?? '',
      text: li.querySelector('.text')?.textContent ?? '',
      // Any element inside the text would mean data was parsed as HTML.
      markup: li.querySelector('.text').children.length,
    })),
  );
const presenceOf = (page) =>
  page.$$eval('#presence li', (lis) => lis.map((li) => ({ id: li.dataset.id, text: li.textContent })));
const logged = () => (want) =>
  [...document.querySelectorAll('#log li')].some(
    (li) => li.dataset.type === want.type && li.querySelector('.text').textContent === want.text,
  );

try {
  browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--no-first-run'],
  });
  const context = await browser.newContext();
  const tab1 = await context.newPage();
  const tab2 = await context.newPage();
  for (const [name, page] of [['tab1', tab1], ['tab2', tab2]]) {
    page.on('pageerror', (e) => summary.pageErrors.push(`${name}: ${e}`));
    page.on('console', (m) => { if (m.type() === 'error') summary.pageErrors.push(`${name}: ${m.text()}`); });
  }

  await tab1.goto(`${base}/`);
  await waitFor(tab1, 'tab1 id', () => document.querySelector('#me').dataset.id);
  await tab2.goto(`${base}/`);
  await waitFor(tab2, 'tab2 id', () => document.querySelector('#me').dataset.id);
  const a = await tab1.$eval('#me', (e) => e.textContent);
  const b = await tab2.$eval('#me', (e) => e.textContent);
  summary.me = { tab1: a, tab2: b };

  for (const page of [tab1, tab2]) {
    await waitFor(page, 'presence with both', (ids) =>
      JSON.stringify([...document.querySelectorAll('#presence li')].map((li) => li.dataset.id)) === JSON.stringify(ids),
    [a, b]);
  }

  const shout = 'hello <b>bold</b> & "quotes"';
  await tab1.fill('#broadcast-text', shout);
  await tab1.click('#broadcast-send');
  for (const page of [tab1, tab2]) {
    await waitFor(page, 'the broadcast', logged(), { type: 'message', text: shout });
  }

  await tab2.fill('#channel-name', 'room');
  await tab2.click('#subscribe');
  await waitFor(tab2, 'subscribed', logged(), { type: 'subscribed', text: '#room' });
  await tab1.fill('#channel-name', 'room');
  await tab1.fill('#publish-text', 'to the room');
  await tab1.click('#publish-send');
  await waitFor(tab2, 'the channel message', logged(), { type: 'channel', text: 'to the room' });

  await tab2.fill('#private-to', a);
  await tab2.fill('#private-text', 'just for you');
  await tab2.click('#private-send');
  await waitFor(tab1, 'the private message', logged(), { type: 'private', text: 'just for you' });

  if (apiKey) {
    const res = await fetch(`${base}/api/commands`, {
      method: 'POST',
      headers: { Authorization: `Bearer ${apiKey}`, 'Content-Type': 'application/json' },
      body: JSON.stringify({ command: 'broadcast', message: 'from the backend' }),
    });
    if (res.status !== 200) throw new Error(`API answered ${res.status}`);
    for (const page of [tab1, tab2]) {
      await waitFor(page, 'the API broadcast', logged(), { type: 'message', text: 'from the backend' });
    }
  }

  summary.presence = { tab1: await presenceOf(tab1), tab2: await presenceOf(tab2) };
  // For a person to look at (the Rust test names the folder).
  const shots = process.env.RAKIT_SCREENSHOT_DIR;
  if (shots) {
    await tab1.screenshot({ path: `${shots}/demo-page-tab1.png`, fullPage: true });
    await tab2.screenshot({ path: `${shots}/demo-page-tab2.png`, fullPage: true });
  }
  summary.logs = { tab1: await logOf(tab1), tab2: await logOf(tab2) };
  summary.ok = true;
} catch (e) {
  summary.error = String(e && e.stack ? e.stack : e);
  process.exitCode = 1;
} finally {
  process.stdout.write(JSON.stringify(summary) + '\n');
  if (browser) await browser.close().catch(() => {});
}
