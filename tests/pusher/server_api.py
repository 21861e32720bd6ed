"""The official Python `pusher` 3.3.4 against the daemon's Pusher HTTP API.

Usage: python3 server_api.py PORT APP_ID KEY SECRET SOCKET_ID
Prints one JSON object of results; tests/pusher_js.rs checks it.
"""
import json
import sys

import pusher

port, app_id, key, secret, socket_id = sys.argv[1:6]


def client(secret):
    return pusher.Pusher(app_id=app_id, key=key, secret=secret, host="127.0.0.1", port=int(port), ssl=False)


good = client(secret)
out = {}
out["trigger"] = good.trigger(["news", "other"], "py-event", {"n": 1})
out["excluded"] = good.trigger("news", "py-excluded", {"n": 2}, socket_id=socket_id)
out["batch"] = good.trigger_batch([
    {"channel": "news", "name": "py-batch", "data": {"n": 3}},
    {"channel": "news", "name": "py-batch", "data": "plain text"},
])
out["channels"] = good.channels_info()
out["channel"] = good.channel_info("news", ["subscription_count"])
out["users"] = good.users_info("presence-py")
try:
    client("wrong-secret-wrong-secret").trigger("news", "forged", {})
    out["wrong_secret"] = "accepted"
except pusher.errors.PusherBadAuth as e:
    out["wrong_secret"] = "401"
except Exception as e:  # any other refusal is a failure of the test
    out["wrong_secret"] = type(e).__name__ + ": " + str(e)
print(json.dumps(out))
