#!/usr/bin/env python3
"""Walks GET /v1/tokens from the first page to the last (following next_cursor) over one keep-alive
connection and times every page: does a page deep in the list cost more than one at the start?

    paging.py --port PORT --jwt JWT [--limit 500]

Each page is timed from the request written to the whole body read (the JSON is parsed after the
clock stops). Prints one line `PAGEJSON {...}`:
  pages, rows, total_ms       the whole walk
  us_per_row_all              total page time / rows
  us_per_row_first10pct       the same over the pages holding the first 10 % of the rows
  us_per_row_last10pct        ... and the last 10 %
  first10_ms / deep10_ms      mean time of a full page: the first 10 pages, and the 10 pages from 90 %
                              of the way (fewer when the list is short; no page counted twice)
  first10_n / deep10_n        how many full pages went into each mean
  again_first10_ms / again_deep10_ms
                              after the walk, those same pages fetched again (their cursors kept),
                              first ones and deep ones alternating, REPEAT times: the median of each
                              group's mean, so a change over time (background work, a neighbour)
                              does not pass for a cost of depth
"""
import argparse
import http.client
import json
import sys
import time
import urllib.parse


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--jwt", required=True)
    ap.add_argument("--limit", type=int, default=500)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()

    conn = http.client.HTTPConnection("127.0.0.1", args.port, timeout=60)
    headers = {"Authorization": f"Bearer {args.jwt}"}
    def fetch(cursor):
        """One page: (seconds, parsed page)."""
        q = {"limit": str(args.limit)}
        if cursor:
            q["cursor"] = cursor
        path = "/v1/tokens?" + urllib.parse.urlencode(q)
        t0 = time.perf_counter()
        conn.request("GET", path, headers=headers)
        resp = conn.getresponse()
        body = resp.read()
        t1 = time.perf_counter()
        if resp.status != 200:
            print(f"paging: HTTP {resp.status}: {body[:300]!r}", file=sys.stderr)
            sys.exit(1)
        return t1 - t0, json.loads(body)

    pages = []  # (seconds, rows)
    cursors = []  # the cursor each page was fetched with (None: the first)
    cursor = None
    walk0 = time.perf_counter()
    while True:
        dt, page = fetch(cursor)
        cursors.append(cursor)
        pages.append((dt, len(page["tokens"]) + len(page.get("unreadable", []))))
        cursor = page.get("next_cursor")
        if not cursor:
            break
    walk_s = time.perf_counter() - walk0

    rows = sum(n for _, n in pages)

    def per_row(sel):
        s, n = sum(t for t, _ in sel), sum(n for _, n in sel)
        return round(s * 1e6 / n, 2) if n else None

    # Pages holding the first / last 10 % of the rows.
    tenth = max(1, rows // 10)
    first, last, seen = [], [], 0
    for t, n in pages:
        if seen < tenth:
            first.append((t, n))
        if seen + n > rows - tenth:
            last.append((t, n))
        seen += n
    full = [i for i, (_, n) in enumerate(pages) if n == args.limit]
    first10 = full[:10]
    deep_from = int(len(full) * 0.9)
    deep10 = [i for i in full[deep_from:deep_from + 10] if i not in set(first10)]

    def mean_ms(idx):
        return round(sum(pages[i][0] for i in idx) * 1000 / len(idx), 3) if idx else None

    again = {"first": [], "deep": []}
    if first10 and deep10:
        for _ in range(args.repeat):
            for group, idx in (("first", first10), ("deep", deep10)):
                again[group].append(sum(fetch(cursors[i])[0] for i in idx) * 1000 / len(idx))

    def median(xs):
        xs = sorted(xs)
        return round(xs[(len(xs) - 1) // 2], 3) if xs else None

    out = {
        "limit": args.limit,
        "pages": len(pages),
        "rows": rows,
        "total_ms": round(walk_s * 1000, 1),
        "us_per_row_all": per_row(pages),
        "us_per_row_first10pct": per_row(first),
        "us_per_row_last10pct": per_row(last),
        "first10_ms": mean_ms(first10),
        "first10_n": len(first10),
        "deep10_ms": mean_ms(deep10),
        "deep10_n": len(deep10),
        "deep10_from_page": (deep10[0] + 1) if deep10 else None,
        "again_first10_ms": median(again["first"]),
        "again_deep10_ms": median(again["deep"]),
        "again_repeat": len(again["first"]),
    }
    print("PAGEJSON " + json.dumps(out))


if __name__ == "__main__":
    main()
