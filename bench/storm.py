#!/usr/bin/env python3
"""Refresh storm: N concurrent GET /v1/tokens/{id}/access-token for one expired token.

All N connections are opened first (keep-alive HTTP/1.1), then the N requests are written back
to back, so all N are in flight at the broker before the first answer can arrive. Prints one JSON
line: statuses, the provider's call count (from the fake provider's /count) and latencies:
  last_wait_ms   the slowest caller's wait (its request sent -> its full answer read)
  span_ms        first request sent -> last answer read
python3 stdlib only (asyncio + raw sockets).
"""
import argparse
import asyncio
import json
import resource
import statistics
import sys
import time
import urllib.request


async def connect(host, port, sem):
    async with sem:
        return await asyncio.open_connection(host, port)


async def read_response(reader):
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    length = 0
    for line in lines[1:]:
        if line.lower().startswith("content-length:"):
            length = int(line.split(":", 1)[1])
    body = await reader.readexactly(length) if length else b""
    return status, body


async def one(reader, sent_at, out, i):
    status, body = await read_response(reader)
    out[i] = (status, time.perf_counter() - sent_at[i], time.perf_counter(), body)


async def main_async(args):
    sem = asyncio.Semaphore(200)  # connect in waves of 200 so the listen backlog never overflows
    conns = await asyncio.gather(*[connect(args.host, args.port, sem) for _ in range(args.n)])
    req = (
        f"GET /v1/tokens/{args.token_id}/access-token HTTP/1.1\r\n"
        f"Host: {args.host}:{args.port}\r\n"
        f"Authorization: Bearer {args.jwt}\r\n\r\n"
    ).encode()
    # Give the broker a moment to accept every connection before the burst.
    await asyncio.sleep(0.5)
    sent_at = [0.0] * args.n
    out = [None] * args.n
    readers = []
    t0 = time.perf_counter()
    for i, (reader, writer) in enumerate(conns):
        writer.write(req)
        sent_at[i] = time.perf_counter()
    burst_ms = (time.perf_counter() - t0) * 1000
    readers = [one(r, sent_at, out, i) for i, (r, _) in enumerate(conns)]
    await asyncio.wait_for(asyncio.gather(*readers), timeout=args.timeout)
    t_end = max(o[2] for o in out)
    for _, w in conns:
        w.close()
    statuses = {}
    for o in out:
        statuses[str(o[0])] = statuses.get(str(o[0]), 0) + 1
    tokens = {json.loads(o[3]).get("access_token") for o in out if o[0] == 200}
    waits = sorted(o[1] * 1000 for o in out)
    return {
        "n": args.n,
        "statuses": statuses,
        "distinct_access_tokens": len(tokens),
        "burst_write_ms": round(burst_ms, 1),
        "first_answer_ms": round(waits[0], 1),
        "p50_wait_ms": round(statistics.median(waits), 1),
        "p99_wait_ms": round(waits[int(len(waits) * 0.99) - 1], 1),
        "last_wait_ms": round(waits[-1], 1),
        "span_ms": round((t_end - t0) * 1000, 1),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--jwt", required=True)
    ap.add_argument("--token-id", required=True)
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--timeout", type=float, default=60)
    ap.add_argument("--provider", help="base URL of the fake provider (its /count is read)")
    args = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < args.n + 100:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, args.n + 1000), hard))
    before = after = None
    if args.provider:
        before = json.load(urllib.request.urlopen(args.provider + "/count"))
    result = asyncio.run(main_async(args))
    if args.provider:
        after = json.load(urllib.request.urlopen(args.provider + "/count"))
        result["provider_calls"] = after["refresh_calls"] - before["refresh_calls"]
    print("STORMJSON " + json.dumps(result), flush=True)
    ok = result["statuses"].get("200", 0) == args.n and result.get("provider_calls", 1) == 1
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
