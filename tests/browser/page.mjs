// One headless Chromium page, driven step by step by a Rust test (tests/common/browser.rs) over
// stdin/stdout, one JSON line each way:
//
//   {"id":N,"op":"goto","url":U}              load U
//   {"id":N,"op":"script","url":U}            add <script src=U> and wait for it to run
//   {"id":N,"op":"script","path":P}           add the file P (relative to this folder) as a script
//   {"id":N,"op":"eval","js":E}               the JSON value of the expression E (awaited)
//   {"id":N,"op":"wait","js":E,"ms":T}        wait until E is truthy (polling), its value
//   {"id":N,"op":"content","html":H}          replace the document with H, scripts run
//   {"id":N,"op":"console"}                   the text of every console message so far
//
// Each answer: {"id":N,"ok":true,"value":V} or {"id":N,"ok":false,"error":TEXT,"pageErrors":[...]}.
// Uncaught errors in the page are reported with every failure and by {"op":"errors"}.
//
//   node page.mjs

import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';
import { chromium } from 'playwright-core';

const here = dirname(fileURLToPath(import.meta.url));
const pageErrors = [];
const consoleLines = [];
const browser = await chromium.launch({
  executablePath: '/usr/bin/chromium',
  headless: true,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', '--no-first-run'],
});
const page = await (await browser.newContext()).newPage();
page.on('pageerror', (e) => pageErrors.push(String(e)));
page.on('console', (m) => consoleLines.push(m.text()));

async function run(step) {
  switch (step.op) {
    case 'goto':
      await page.goto(step.url);
      return null;
    case 'script':
      if (step.url) await page.addScriptTag({ url: step.url });
      else await page.addScriptTag({ path: join(here, step.path) });
      return null;
    case 'eval':
      return await page.evaluate(`(async () => (${step.js}))()`);
    case 'wait': {
      const handle = await page.waitForFunction(step.js, null, { timeout: step.ms, polling: 20 });
      return await handle.jsonValue();
    }
    case 'content':
      await page.setContent(step.html, { waitUntil: 'load' });
      return null;
    case 'console':
      return consoleLines;
    case 'errors':
      return pageErrors;
    default:
      throw new Error(`unknown op ${step.op}`);
  }
}

for await (const line of createInterface({ input: process.stdin })) {
  let step;
  try {
    step = JSON.parse(line);
    const value = await run(step);
    process.stdout.write(JSON.stringify({ id: step.id, ok: true, value: value ?? null }) + '\n');
  } catch (e) {
    process.stdout.write(JSON.stringify({ id: step && step.id, ok: false, error: String(e && e.stack || e), pageErrors }) + '\n');
  }
}
await browser.close();
