// Drives the demo chat page (src/http/demo.html) on a channel with presence (SPEC section
// 15.3) in two headless Chromium tabs, and prints what the channel's member list shows.
//
//   node demo_members.mjs http://HOST:PORT CHANNEL
//
// Steps, each awaited on the pages' DOM: both tabs open BASE/; tab1 subscribes to CHANNEL and
// lists itself; tab2 subscribes and both list both (tab1 through `join`); tab2 unsubscribes:
// tab1 lists itself again (`leave`) and tab2's list is hidden.
// Output: {"ok","error","me":{tab1,tab2},"joined":{tab1,tab2},"left":{tab1,tab2Hidden},"pageErrors"}

import { chromium } from 'playwright-core';

const STEP_TIMEOUT_MS = 15000;
const [base, channel] = process.argv.slice(2);
const summary = { ok: false, error: null, me: {}, joined: {}, left: {}, pageErrors: [] };
let browser;

async function waitFor(page, what, fn, arg) {
  try {
    await page.waitForFunction(fn, arg, { timeout: STEP_TIMEOUT_MS, polling: 20 });
  } catch (e) {
    throw new Error(`timed out waiting for ${what}`);
  }
}

const membersOf = (page) =>
  page.$$eval('#members li', (lis) => lis.map((li) => ({ id: li.dataset.id, text: li.textContent })));
const listed = () => (ids) =>
  !document.querySelector('#members-box').hidden &&
  JSON.stringify([...document.querySelectorAll('#members li')].map((li) => li.dataset.id)) === JSON.stringify(ids);

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
  for (const page of [tab1, tab2]) {
    await page.goto(`${base}/`);
    await waitFor(page, 'an id', () => document.querySelector('#me').dataset.id);
  }
  const a = await tab1.$eval('#me', (e) => e.textContent);
  const b = await tab2.$eval('#me', (e) => e.textContent);
  summary.me = { tab1: a, tab2: b };

  await tab1.fill('#channel-name', channel);
  await tab1.click('#subscribe');
  await waitFor(tab1, 'tab1 listing itself', listed(), [a]);
  await tab2.fill('#channel-name', channel);
  await tab2.click('#subscribe');
  for (const page of [tab1, tab2]) await waitFor(page, 'both listed', listed(), [a, b]);
  summary.joined = { tab1: await membersOf(tab1), tab2: await membersOf(tab2) };

  await tab2.click('#unsubscribe');
  await waitFor(tab1, 'tab2 gone from the list', listed(), [a]);
  await waitFor(tab2, 'the list hidden', () => document.querySelector('#members-box').hidden);
  summary.left = { tab1: await membersOf(tab1), tab2Hidden: true };
  summary.ok = true;
} catch (e) {
  summary.error = String(e && e.stack ? e.stack : e);
  process.exitCode = 1;
} finally {
  process.stdout.write(JSON.stringify(summary) + '\n');
  if (browser) await browser.close().catch(() => {});
}
