#!/usr/bin/env python3
"""Start-up time: exec of `token-broker serve` -> first 200 on GET /healthz, each run on a fresh
SQLite database (so migrations run too). Polls /healthz over raw sockets as fast as it can.
The broker's keys and other settings come from the environment (TOKEN_BROKER__…).
Prints one JSON line: runs, min/median/max ms, and VmRSS (KiB) at the first 200.
"""
import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time


def healthz_ok(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            data = s.recv(64)
            return data.startswith(b"HTTP/1.1 200")
    except OSError:
        return False


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", required=True)
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--cpus", help="taskset CPU list for the broker")
    args = ap.parse_args()
    times, rss = [], []
    for _ in range(args.runs):
        with tempfile.TemporaryDirectory(prefix="tb-start-") as d:
            port = free_port()
            env = dict(os.environ)
            env["TOKEN_BROKER__DATABASE__URL"] = f"sqlite://{d}/broker.db?mode=rwc"
            env["TOKEN_BROKER__SERVER__PORT"] = str(port)
            cmd = [args.bin, "serve"]
            if args.cpus:
                cmd = ["taskset", "-c", args.cpus] + cmd
            t0 = time.perf_counter()
            p = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            deadline = t0 + 30
            while not healthz_ok(port):
                if p.poll() is not None or time.perf_counter() > deadline:
                    print(f"broker did not start (exit {p.poll()})", file=sys.stderr)
                    p.kill()
                    sys.exit(1)
                time.sleep(0.0005)
            times.append((time.perf_counter() - t0) * 1000)
            rss.append(rss_kib(p.pid))
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                print("bench: warning: the broker did not stop within 30 s of SIGTERM; killed",
                      file=sys.stderr)
                p.kill()
                p.wait()
    print("STARTJSON " + json.dumps({
        "runs": args.runs,
        "min_ms": round(min(times), 1),
        "median_ms": round(statistics.median(times), 1),
        "max_ms": round(max(times), 1),
        "rss_at_start_kib": int(statistics.median(rss)),
    }), flush=True)


if __name__ == "__main__":
    main()
