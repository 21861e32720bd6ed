// The Node `pusher` 5.3.4 library's webhook validator on POSTs the daemon sent.
// Usage: node webhook_check.mjs APP_ID KEY SECRET < posts.json
// posts.json: [{"headers": {lower-case name: value}, "body": raw body text}, ...]
// Prints, per POST: whether `pusher.webhook(...).isValid()` accepts it with the app's secret and
// with a wrong one, and what `getEvents()` / `getTime()` return; tests/pusher_webhooks.rs checks it.
import PusherServer from 'pusher';

const [appId, key, secret] = process.argv.slice(2);
const good = new PusherServer({ appId, key, secret });
const wrong = new PusherServer({ appId, key, secret: 'not-the-secret-at-all-0123' });

let input = '';
process.stdin.setEncoding('utf8');
process.stdin.on('data', (chunk) => (input += chunk));
process.stdin.on('end', () => {
  const out = JSON.parse(input).map(({ headers, body }) => {
    const request = { headers, rawBody: body };
    const hook = good.webhook(request);
    const valid = hook.isValid();
    return {
      valid,
      valid_with_wrong_secret: wrong.webhook(request).isValid(),
      events: valid ? hook.getEvents() : null,
      time_ms: valid ? hook.getTime().getTime() : null,
    };
  });
  console.log(JSON.stringify(out));
});
