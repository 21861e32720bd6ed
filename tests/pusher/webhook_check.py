"""The official Python `pusher` 3.3.4 library's `validate_webhook` on POSTs the daemon sent.

Usage: python3 webhook_check.py APP_ID KEY SECRET < posts.json
posts.json: [{"headers": {lower-case name: value}, "body": raw body text}, ...]
Prints, per POST, what `validate_webhook(key, signature, body)` returns with the app's secret
(the decoded body, or null when refused) and whether a wrong secret refuses it;
tests/pusher_webhooks.rs checks it.
"""
import json
import sys

import pusher

app_id, key, secret = sys.argv[1:4]
good = pusher.Pusher(app_id=app_id, key=key, secret=secret)
wrong = pusher.Pusher(app_id=app_id, key=key, secret="not-the-secret-at-all-0123")

out = []
for post in json.load(sys.stdin):
    headers, body = post["headers"], post["body"]
    args = (headers.get("x-pusher-key", ""), headers.get("x-pusher-signature", ""), body)
    out.append({
        "validated": good.validate_webhook(*args),
        "refused_with_wrong_secret": wrong.validate_webhook(*args) is None,
    })
print(json.dumps(out))
