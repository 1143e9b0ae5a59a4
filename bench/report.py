#!/usr/bin/env python3
"""Renders bench/run.sh's results (one JSON object a line) as a Markdown report.

    report.py RESULTS.jsonl [--meta key=value ...] > results-latest.md
"""
import argparse
import json

NAMES = {"sqlite": "SQLite", "postgres": "PostgreSQL", "mysql": "MariaDB"}
TARGET_RATIO = 0.6
TARGET_P99_MS = 5.0


def ms(us):
    return f"{us / 1000:.2f}"


def mib(kib):
    return f"{kib / 1024:.1f}"


def errors(w):
    return w["non2xx"] + w["err_timeout"] + w["err_read"] + w["err_connect"] + w["err_write"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("results")
    ap.add_argument("--meta", action="append", default=[])
    args = ap.parse_args()
    meta = dict(m.split("=", 1) for m in args.meta)
    rows = [json.loads(line) for line in open(args.results) if line.strip()]
    by = {}
    pairs = {}
    backends = []
    for r in rows:
        by[(r["backend"], r["test"])] = r
        if "pair" in r:
            pairs.setdefault((r["backend"], r["test"]), {})[r["pair"]] = r
        if r["backend"] not in backends and r["test"] not in ("startup",):
            backends.append(r["backend"])
    out = []
    p = out.append

    p("# token-broker benchmark results")
    p("")
    for k in ("date", "commit", "cpu", "nproc", "mem", "kernel", "load", "pinning", "wrk",
              "postgres", "mariadb", "overrides", "command"):
        if k in meta:
            p(f"- **{k}**: {meta[k]}")
    p("")

    # Hot path ------------------------------------------------------------------------------
    p("## Hot path vs /healthz")
    p("")
    p("`GET /v1/tokens/{id}/access-token` with a random one of the seeded tokens per request "
      "(JWT scope `tokens:access`), then `GET /healthz` with the same client work per request. "
      f"Target: ratio ≥ {TARGET_RATIO} and hot-path p99 < {TARGET_P99_MS:g} ms.")
    p("")
    p("| backend | configuration | hot path req/s | p50 ms | p99 ms | /healthz req/s | p50 ms | p99 ms | ratio | target |")
    p("|---|---|---:|---:|---:|---:|---:|---:|---:|---|")
    configs = (("hot", "healthz", meta.get("main_config", "main run")),
               ("hot_pinned", "healthz_pinned", "pinned: broker 1 core, wrk 1 core"),
               ("hot_info", "healthz_info", "log.filter=info (logs to a file)"))
    spread = {}
    for b in backends:
        hp, zp = pairs.get((b, "hot"), {}), pairs.get((b, "healthz"), {})
        both = sorted((hp[i]["wrk"]["rps"] / zp[i]["wrk"]["rps"], i) for i in hp if i in zp and zp[i]["wrk"]["rps"])
        if both:
            _, mid = both[(len(both) - 1) // 2]
            by[(b, "hot")], by[(b, "healthz")] = hp[mid], zp[mid]
            spread[b] = both
    for b in backends:
        for th, tz, label in configs:
            hot, hz = by.get((b, th)), by.get((b, tz))
            if not hot or not hz:
                continue
            h, z = hot["wrk"], hz["wrk"]
            ratio = h["rps"] / z["rps"] if z["rps"] else 0
            ok_ratio = ratio >= TARGET_RATIO
            ok_p99 = h["p99_us"] / 1000 < TARGET_P99_MS
            verdict = "met" if ok_ratio and ok_p99 else "NOT met (" + ", ".join(
                x for x, bad in (("ratio", not ok_ratio), ("p99", not ok_p99)) if bad) + ")"
            err = errors(h) + errors(z)
            p(f"| {NAMES.get(b, b)} | {label} | {h['rps']:.0f} | {ms(h['p50_us'])} | {ms(h['p99_us'])} | "
              f"{z['rps']:.0f} | {ms(z['p50_us'])} | {ms(z['p99_us'])} | {ratio:.2f} | {verdict}"
              + (f" ({err} errors)" if err else "") + " |")
    if any(len(v) > 1 for v in spread.values()):
        p("")
        p("Main run: " + "; ".join(
            f"{NAMES.get(b, b)} pairs " + ", ".join(
                f"{pairs[(b, 'hot')][i]['wrk']['rps']:.0f}/{pairs[(b, 'healthz')][i]['wrk']['rps']:.0f} = {r:.2f}"
                for r, i in sorted(v, key=lambda x: x[1]))
            for b, v in spread.items()) + " (hot path req/s / healthz req/s = ratio, in run order; the "
            "table shows the pair with the median ratio).")
    for b in backends:
        hot = by.get((b, "cache"))
        if hot and "cache_hits" in hot:
            n = hot["cache_hits"] + hot["cache_misses"]
            if n:
                p("")
                p(f"{NAMES.get(b, b)}: the broker's in-memory token cache (`token_cache_total`) answered "
                  f"{100 * hot['cache_hits'] / n:.0f} % of the measured hot-path requests "
                  f"({hot['cache_misses']} {'miss' if hot['cache_misses'] == 1 else 'misses'} read the database).")
    p("")
    p("Tails of the same runs, and the cold start of the hot path (the warm-up: every token once, "
      "in turn, right after start):")
    p("")
    p("| backend | run | req/s | p50 ms | p90 ms | p99 ms | p99.9 ms | max ms | errors |")
    p("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    variants = (("hot_cold", "hot path, cold (first use of every token)"),
                ("hot", "hot path, warm (median pair)"),
                ("healthz", "/healthz (median pair)"),
                ("hot_pinned", "hot path, pinned"),
                ("hot_info", "hot path, log.filter=info"))
    for b in backends:
        for test, label in variants:
            r = by.get((b, test))
            if not r:
                continue
            w = r["wrk"]
            p(f"| {NAMES.get(b, b)} | {label} | {w['rps']:.0f} | {ms(w['p50_us'])} | {ms(w['p90_us'])} | "
              f"{ms(w['p99_us'])} | {ms(w['p999_us'])} | {ms(w['max_us'])} | {errors(w)} |")
    p("")

    # Refresh storm ---------------------------------------------------------------------------
    p("## Refresh storm")
    p("")
    p("N callers, all connected first, then N `GET …/access-token` written back to back for one "
      "token whose access token expired an hour ago; the fake provider answers after a fixed delay. "
      "Waits are per caller, from its request written to its answer read.")
    p("")
    p("| backend | callers | answers | provider calls | distinct tokens served | first answer ms | p50 wait ms | p99 wait ms | last caller waited ms | result |")
    p("|---|---:|---|---:|---:|---:|---:|---:|---:|---|")
    for b in backends:
        r = by.get((b, "storm"))
        if not r:
            continue
        s = r["storm"]
        if "error" in s:
            p(f"| {NAMES.get(b, b)} | | {s['error']} | | | | | | | FAILED |")
            continue
        answers = ", ".join(f"{v}×{k}" for k, v in sorted(s["statuses"].items()))
        result = "exactly 1 provider call" if s.get("provider_calls") == 1 and s["statuses"].get("200") == s["n"] \
            else "FAILED"
        p(f"| {NAMES.get(b, b)} | {s['n']} | {answers} | {s.get('provider_calls', '?')} | "
          f"{s['distinct_access_tokens']} | {s['first_answer_ms']} | {s['p50_wait_ms']} | {s['p99_wait_ms']} | "
          f"**{s['last_wait_ms']}** | {result} |")
    p("")

    # Write path --------------------------------------------------------------------------------
    p("## Write path")
    p("")
    p("`PUT /v1/tokens` (save_token, scope `tokens:write`): *insert* saves a new user each request "
      "(201), *update* re-saves a random seeded user with a new access token (200). "
      "*import* is `token-broker import zoho-csv` of the seed file (sequential, one process, no HTTP).")
    p("")
    p("| backend | operation | saves/s | p50 ms | p99 ms | errors |")
    p("|---|---|---:|---:|---:|---:|")
    for b in backends:
        for test, label in (("save_insert", "PUT, new user (insert)"), ("save_update", "PUT, existing user (update)")):
            r = by.get((b, test))
            if r:
                w = r["wrk"]
                p(f"| {NAMES.get(b, b)} | {label} | {w['rps']:.0f} | {ms(w['p50_us'])} | {ms(w['p99_us'])} | {errors(w)} |")
        r = by.get((b, "import"))
        if r:
            p(f"| {NAMES.get(b, b)} | import zoho-csv, {r['rows']} rows | {r['rows'] / (r['ms'] / 1000):.0f} | | | |")
    p("")

    # Memory and start-up ---------------------------------------------------------------------------
    p("## Memory and start-up")
    p("")
    p("| backend | RSS idle after start MiB | RSS right after the hot path MiB | peak RSS (VmHWM) MiB | start with migrated DB ms (curl poll, 10 ms steps) |")
    p("|---|---:|---:|---:|---:|")
    for b in backends:
        st, mem = by.get((b, "start")), by.get((b, "memory"))
        if not st or not mem:
            continue
        p(f"| {NAMES.get(b, b)} | {mib(st['rss_idle_kib'])} | {mib(mem['rss_after_hot_kib'])} | "
          f"{mib(mem['hwm_after_hot_kib'])} | {st['started_ms']} |")
    p("")
    su = by.get(("sqlite", "startup"))
    if su:
        s = su["startup"]
        p(f"Start-up, exec → first 200 on `/healthz`, fresh SQLite database (migrations included), "
          f"release build, {s['runs']} runs: **median {s['median_ms']} ms** (min {s['min_ms']}, "
          f"max {s['max_ms']}); RSS at that moment {mib(s['rss_at_start_kib'])} MiB.")
        p("")
    for r in rows:
        if r["test"] == "skipped":
            p(f"- {NAMES.get(r['backend'], r['backend'])}: skipped (server unreachable)")
    print("\n".join(out))


if __name__ == "__main__":
    main()
