#!/usr/bin/env python3
"""Slow readers: SLOW subscribers of channel `bench` that stop reading (websockets max_queue=1),
a publisher sending MSGS small messages in small bursts (one turn each, about), and the
server CPU used (utime + stime). Each turn used to walk every lagging queue whole.

    python3 benches/load/slow-readers.py RAKIT_BINARY 20 60000
"""
import asyncio, subprocess, sys, os, time
import websockets
TICK=os.sysconf("SC_CLK_TCK")
def cpu_ms(pid):
    f=open(f"/proc/{pid}/stat").read().rsplit(")",1)[1].split()
    return (int(f[11])+int(f[12]))*1000/TICK
async def run(url,pid,slow,msgs):
    subs=[]
    for _ in range(slow):
        ws=await websockets.connect(url,max_queue=1,compression=None)
        await ws.send('{"event":"subscribe","channel":"bench"}')
        while '"subscribed"' not in await ws.recv(): pass
        subs.append(ws)
    pub=await websockets.connect(url,compression=None); await pub.recv()
    c0=cpu_ms(pid); t0=time.monotonic()
    body='{"event":"message","channel":"bench","data":"%06d"}'
    for i in range(msgs):
        await pub.send(body%i)
        if i % 10 == 0: await asyncio.sleep(0.0001)
    # a last round trip so the server has routed everything
    await pub.send('{"event":"subscribe","channel":"x"}')
    while '"subscribed"' not in await pub.recv(): pass
    return cpu_ms(pid)-c0, time.monotonic()-t0
def main(binary, slow, msgs):
    p=subprocess.Popen([binary,"websocket:run","--port=0","--config=" + os.path.join(os.path.dirname(os.path.abspath(__file__)), "rakit-bench.toml") + ""],stdout=subprocess.PIPE,text=True)
    try:
        addr=next(w for w in p.stdout.readline().split() if w.startswith("ws://"))
        used,secs=asyncio.run(run(addr,p.pid,slow,msgs))
        print(f"{binary} slow={slow} msgs={msgs} server_cpu_ms={used:.0f} secs={secs:.2f}",flush=True)
    finally:
        p.kill(); p.wait()
main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
