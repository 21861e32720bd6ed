#!/usr/bin/env python3
"""TLS channel fan-out, two rakit builds in the same run (the loadgen speaks no TLS).

    python3 benches/load/tls-fanout.py RAKIT_A RAKIT_B [--rounds 3] [--subs 100] [--msgs 2000]

Each round starts A then B (alternating), each with benches/load/rakit-bench.toml plus a
`[tls]` section (a self-signed P-256 certificate made by the openssl CLI), subscribes `subs`
clients (Python `websockets`, TLS 1.3) to channel `bench`, has one more client publish
`msgs` 64-byte messages, and waits until every subscriber has every message in order.
Printed per run: deliveries, seconds, the server's CPU (utime + stime from /proc) per
delivery. The client side is slow Python; compare the servers' CPU per delivery, not rates.
"""
import argparse
import asyncio
import os
import ssl
import statistics
import subprocess
import sys
import tempfile
import time

import websockets

HERE = os.path.dirname(os.path.abspath(__file__))
TICK = os.sysconf("SC_CLK_TCK")


def cpu_ms(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * 1000 / TICK


def make_cert(d):
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-nodes", "-keyout", "key.pem", "-out", "cert.pem", "-days", "2", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        cwd=d, check=True, capture_output=True)
    with open(os.path.join(HERE, "rakit-bench.toml")) as f:
        base = f.read()
    # The [tls] table goes before the first table of the base config.
    head, sep, tail = base.partition("\n[")
    conf = os.path.join(d, "rakit.toml")
    with open(conf, "w") as f:
        f.write(f'{head}\n[tls]\ncert = "{d}/cert.pem"\nkey = "{d}/key.pem"\n{sep.lstrip()}{tail}')
    return conf


async def one_run(url, ctx, subs, msgs, pid):
    clients = []
    for _ in range(subs):
        ws = await websockets.connect(url, ssl=ctx, max_queue=None, compression=None)
        await ws.send('{"event":"subscribe","channel":"bench"}')
        while '"subscribed"' not in await ws.recv():
            pass
        clients.append(ws)
    pub = await websockets.connect(url, ssl=ctx, compression=None)
    await pub.recv()  # welcome

    async def reader(ws):
        want = 0
        while want < msgs:
            m = await ws.recv()
            at = m.find("#")
            if at < 0:
                continue
            if int(m[at + 1:at + 7]) != want:
                raise SystemExit(f"out of order: {m}")
            want += 1

    body = [f'{{"event":"message","channel":"bench","data":"#{i:06}#{"x" * 8}"}}' for i in range(msgs)]
    c0, t0 = cpu_ms(pid), time.monotonic()
    readers = [asyncio.create_task(reader(ws)) for ws in clients]
    for b in body:
        await pub.send(b)
    await asyncio.wait_for(asyncio.gather(*readers), 120)
    secs, used = time.monotonic() - t0, cpu_ms(pid) - c0
    for ws in clients + [pub]:
        await ws.close()
    return secs, used


def run(binary, conf, ctx, subs, msgs):
    p = subprocess.Popen([binary, "websocket:run", "--port=0", f"--config={conf}"],
                         stdout=subprocess.PIPE, text=True)
    try:
        line = p.stdout.readline()
        addr = next(w for w in line.split() if w.startswith("wss://")).rstrip("/")
        secs, used = asyncio.run(one_run(addr + "/", ctx, subs, msgs, p.pid))
    finally:
        p.kill()
        p.wait()
    n = subs * msgs
    return {"deliveries": n, "secs": secs, "cpu_ms": used, "ns_per_delivery": used * 1e6 / n}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("a")
    ap.add_argument("b")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--subs", type=int, default=100)
    ap.add_argument("--msgs", type=int, default=2000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        conf = make_cert(d)
        ctx = ssl.create_default_context(cafile=os.path.join(d, "cert.pem"))
        res = {"A": [], "B": []}
        for r in range(args.rounds):
            for name, binary in (("A", args.a), ("B", args.b)):
                out = run(binary, conf, ctx, args.subs, args.msgs)
                res[name].append(out["ns_per_delivery"])
                print(f"round={r} build={name} " + " ".join(f"{k}={v:.0f}" for k, v in out.items()),
                      flush=True)
    ma, mb = statistics.median(res["A"]), statistics.median(res["B"])
    print(f"median server CPU per TLS delivery: A {ma:.0f} ns, B {mb:.0f} ns, A/B {ma / mb:.2f} "
          f"(A rounds {[round(x) for x in res['A']]}, B rounds {[round(x) for x in res['B']]})")


if __name__ == "__main__":
    sys.exit(main())
