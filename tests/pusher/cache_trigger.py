"""The official Python `pusher` 3.3.4 publishing on cache channels (SPEC section 16).

Usage: python3 cache_trigger.py PORT APP_ID KEY SECRET CHANNEL...
Triggers event `py` with data {"n": I} on the I-th CHANNEL (from 1), one `trigger` each, then
all of them again in one `trigger_batch` with {"n": 100 + I}. Prints one JSON object of the
answers; tests/pusher_cache.rs checks what subscribers then find cached.
"""
import json
import sys

import pusher

port, app_id, key, secret = sys.argv[1:5]
channels = sys.argv[5:]
client = pusher.Pusher(app_id=app_id, key=key, secret=secret, host="127.0.0.1", port=int(port), ssl=False)
out = {"trigger": [client.trigger(channel, "py", {"n": i}) for i, channel in enumerate(channels, 1)]}
out["batch"] = client.trigger_batch(
    [{"channel": channel, "name": "py", "data": {"n": 100 + i}} for i, channel in enumerate(channels, 1)]
)
print(json.dumps(out))
