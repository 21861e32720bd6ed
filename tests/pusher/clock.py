"""The official Python `pusher` 3.3.4 triggering with its clock set wrong.

Usage: python3 clock.py PORT APP_ID KEY SECRET
The library signs `auth_timestamp` from time.time(); each trigger runs with that clock
shifted by a number of seconds. Prints one JSON object: shift -> the HTTP status the daemon
answered (200, or 401 for a refused signature); tests/pusher_api.rs checks it.
"""
import json
import sys
import time

import pusher

port, app_id, key, secret = sys.argv[1:5]
real_time = time.time
client = pusher.Pusher(app_id=app_id, key=key, secret=secret, host="127.0.0.1", port=int(port), ssl=False)
out = {}
for shift in (0, -300, 540, -660, 660, -3600, 3600):
    time.time = lambda shift=shift: real_time() + shift
    try:
        client.trigger("clock", "tick", {"shift": shift})
        out[str(shift)] = 200
    except pusher.errors.PusherBadAuth:
        out[str(shift)] = 401
    except Exception as e:  # any other answer is a failure of the test
        out[str(shift)] = type(e).__name__ + ": " + str(e)
    finally:
        time.time = real_time
print(json.dumps(out))
