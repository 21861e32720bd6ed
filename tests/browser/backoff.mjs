// The browser client's reconnect wait (SPEC 16.2: before attempt n, a random time between 0 and
// min(20 s, 0.5 s x 2^n), "full jitter"), checked in Node on the pure function the client
// exports: clients/js/rakit-websocket.js loaded as a CommonJS module. Run by
// tests/browser_client.rs; exits non-zero with the failures listed.
//
//   node backoff.mjs

import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const RakitWebSocket = require('../../clients/js/rakit-websocket.js');
const { backoff } = RakitWebSocket;
const failures = [];
const check = (ok, what) => { if (!ok) failures.push(what); };

check(typeof RakitWebSocket === 'function', 'module.exports is the class');
const SAMPLES = 20000;
for (let n = 0; n <= 12; n++) {
  const cap = Math.min(20000, 500 * 2 ** n);
  // The bounds, exactly, with a chosen random source.
  check(backoff(n, () => 0) === 0, `n=${n}: random 0 waits 0`);
  check(Math.abs(backoff(n, () => 0.999999) - cap * 0.999999) < 1e-6, `n=${n}: the cap is ${cap}`);
  check(backoff(n, () => 0.5) === cap / 2, `n=${n}: linear in the random number`);
  // Uniform over [0, cap] with Math.random: mean cap/2 (standard error cap/sqrt(12 N), about
  // 0.002 cap), a quarter below cap/4 (standard error 0.003), both ends reached.
  const waits = Array.from({ length: SAMPLES }, () => backoff(n));
  const mean = waits.reduce((a, b) => a + b, 0) / SAMPLES;
  const quarter = waits.filter((w) => w < cap / 4).length / SAMPLES;
  check(waits.every((w) => w >= 0 && w <= cap), `n=${n}: every wait within [0, ${cap}]`);
  check(Math.abs(mean / cap - 0.5) < 0.015, `n=${n}: mean ${mean} is not about ${cap / 2}`);
  check(Math.abs(quarter - 0.25) < 0.02, `n=${n}: ${quarter} below a quarter of the cap`);
  check(Math.min(...waits) < cap * 0.01 && Math.max(...waits) > cap * 0.99, `n=${n}: both ends`);
}
// Far beyond the cap's doubling nothing overflows.
for (const n of [30, 1000, Infinity]) {
  const w = backoff(n, () => 0.5);
  check(w === 10000, `n=${n}: ${w}`);
}

if (failures.length) {
  console.error(failures.join('\n'));
  process.exit(1);
}
console.log(`ok: ${13 * SAMPLES} waits`);
