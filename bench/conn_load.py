#!/usr/bin/env python3
"""Connection load on `gpuorch server`: what N agents' connections cost it when idle.

    bench/conn_load.py --gpuorch build/debug/src/cli/gpuorch --nodes 1000 [--seconds 30]

Starts a server on loopback (fresh data directory, default config but the listen address),
registers N nodes (one GPU each) and then speaks for each node what an idle agent speaks:
one connection holding the long poll of its desired list (re-armed as soon as it is
answered) and one keep-alive connection heartbeating `{"tasks": []}` (nothing changed) at
the interval the server tells it, first beats spread over one interval. Once every watch
is held it measures the server process over --seconds: threads, CPU (user+system, from
/proc), RSS, open descriptors, and the requests served; then GET /healthz latency on a new
connection while all of that stays open. Prints one JSON object on its last line (for
scripts/record).
"""
import argparse
import json
import os
import random
import selectors
import socket
import subprocess
import sys
import tempfile
import time


def proc_stats(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    cpu_s = (int(fields[11]) + int(fields[12])) / ticks  # utime + stime
    threads = rss_kib = 0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("Threads:"):
                threads = int(line.split()[1])
            elif line.startswith("VmRSS:"):
                rss_kib = int(line.split()[1])
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    return cpu_s, threads, rss_kib, fds


class Conn:
    """One keep-alive HTTP/1.1 connection, one request in flight at a time."""

    def __init__(self, port, node, kind):
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.setblocking(False)
        self.node, self.kind = node, kind
        self.buf = b""
        self.busy = False

    def send(self, method, path, body=b""):
        head = f"{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n"
        if body:
            head += "Content-Type: application/json\r\n"
        self.sock.sendall((head + "\r\n").encode() + body)
        self.busy = True

    def read(self):
        """Returns (status, body) once a whole response arrived, else None."""
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"{self.kind} connection of {self.node} closed")
        self.buf += chunk
        end = self.buf.find(b"\r\n\r\n")
        if end < 0:
            return None
        head = self.buf[:end].decode()
        length = 0
        for line in head.split("\r\n")[1:]:
            k, _, v = line.partition(":")
            if k.lower() == "content-length":
                length = int(v)
        if len(self.buf) < end + 4 + length:
            return None
        body = self.buf[end + 4:end + 4 + length]
        self.buf = self.buf[end + 4 + length:]
        self.busy = False
        return int(head[9:12]), body


def blocking_request(port, method, path, body=b""):
    c = Conn(port, "-", "probe")
    c.sock.setblocking(True)
    c.send(method, path, body)
    while True:
        got = c.read()
        if got:
            c.sock.close()
            return got


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--gpuorch", required=True)
    ap.add_argument("--nodes", type=int, default=1000)
    ap.add_argument("--seconds", type=float, default=30)
    ap.add_argument("--config", default="", help="extra server config (YAML lines)")
    a = ap.parse_args()

    data = tempfile.mkdtemp(prefix="gpuorch-connload-")
    port = random.randint(20000, 60000)
    with open(os.path.join(data, "config.yaml"), "w") as f:
        f.write(f"listen: 127.0.0.1:{port}\ndata: {data}/state\n{a.config}\n")
    server = subprocess.Popen([a.gpuorch, "server", "--config", os.path.join(data, "config.yaml")],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(300):
            try:
                if blocking_request(port, "GET", "/healthz")[0] == 200:
                    break
            except OSError:
                time.sleep(0.05)
        gpu = [{"index": 0, "model": "H100-80GB", "memory_mib": 81920}]
        interval_ms = 0
        for i in range(a.nodes):
            status, body = blocking_request(
                port, "POST", "/v1/agents/register",
                json.dumps({"name": f"load-{i}", "gpus": gpu}).encode())
            assert status == 200, body
            interval_ms = json.loads(body)["heartbeat_interval_ms"]

        sel = selectors.DefaultSelector()
        epoch = {}
        version = {}
        watches, beats = [], []
        for i in range(a.nodes):
            node = f"load-{i}"
            w = Conn(port, node, "watch")
            w.send("GET", f"/v1/agents/{node}/desired?wait_ms=0")
            sel.register(w.sock, selectors.EVENT_READ, w)
            watches.append(w)
            b = Conn(port, node, "heartbeat")
            sel.register(b.sock, selectors.EVENT_READ, b)
            beats.append(b)
        now = time.monotonic()
        due = {b: now + random.uniform(0, interval_ms / 1000) for b in beats}
        served = {"watch": 0, "heartbeat": 0}

        def pump(until):
            nonlocal interval_ms
            while True:
                now = time.monotonic()
                if now >= until:
                    return
                for b, t in due.items():
                    if t <= now and not b.busy:
                        b.send("POST", f"/v1/agents/{b.node}/heartbeat", b'{"tasks": []}')
                        due[b] = now + interval_ms / 1000
                timeout = min(until, min(due.values())) - now
                for key, _ in sel.select(max(timeout, 0.001)):
                    c = key.data
                    got = c.read()
                    if not got:
                        continue
                    status, body = got
                    assert status == 200, (c.kind, status, body)
                    served[c.kind] += 1
                    answer = json.loads(body)
                    interval_ms = answer.get("heartbeat_interval_ms", interval_ms)
                    if c.kind == "watch":
                        epoch[c.node], version[c.node] = answer["epoch"], answer["version"]
                        c.send("GET", f"/v1/agents/{c.node}/desired?epoch={epoch[c.node]}"
                               f"&after={version[c.node]}&wait_ms={interval_ms}")

        # Settle: every watch answered once and held again.
        pump(time.monotonic() + 3)
        held = sum(1 for w in watches if w.busy)
        served = {"watch": 0, "heartbeat": 0}
        cpu0, _, _, _ = proc_stats(server.pid)
        t0 = time.monotonic()
        pump(t0 + a.seconds)
        cpu1, threads, rss_kib, fds = proc_stats(server.pid)
        wall = time.monotonic() - t0
        lat = []
        for _ in range(200):
            s = time.perf_counter()
            assert blocking_request(port, "GET", "/healthz")[0] == 200
            lat.append((time.perf_counter() - s) * 1000)
        lat.sort()
        result = {
            "nodes": a.nodes,
            "connections": 2 * a.nodes,
            "watches_held": held,
            "heartbeat_interval_ms": interval_ms,
            "seconds": round(wall, 1),
            "server_threads": threads,
            "server_cpu_percent_of_one_core": round(100 * (cpu1 - cpu0) / wall, 2),
            "server_rss_mib": round(rss_kib / 1024, 1),
            "server_fds": fds,
            "heartbeats_per_s": round(served["heartbeat"] / wall, 1),
            "watch_answers_per_s": round(served["watch"] / wall, 1),
            "healthz_ms_p50": round(lat[len(lat) // 2], 3),
            "healthz_ms_p99": round(lat[int(len(lat) * 0.99)], 3),
        }
        print(json.dumps(result))
    finally:
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    sys.exit(main())
