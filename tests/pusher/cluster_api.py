"""The official Python `pusher` 3.3.4 querying one node of a cluster (SPEC sections 11 and 13).

Usage: python3 cluster_api.py PORT APP_ID KEY SECRET
Prints one JSON object of answers; tests/cluster_pusher.rs checks that they count the clients of
every node.
"""
import json
import sys

import pusher

port, app_id, key, secret = sys.argv[1:5]
client = pusher.Pusher(app_id=app_id, key=key, secret=secret, host="127.0.0.1", port=int(port), ssl=False)
out = {
    "channels": client.channels_info(),
    "presence": client.channels_info(prefix_filter="presence-", attributes=["user_count"]),
    "news": client.channel_info("news", ["subscription_count"]),
    "room": client.channel_info("presence-py", ["user_count", "subscription_count"]),
    "users": client.users_info("presence-py"),
}
print(json.dumps(out))
