#!/usr/bin/env python3
"""Renders bench/run.sh's results (one JSON object a line) as a Markdown report.

    report.py RESULTS.jsonl [--meta key=value ...] > results-latest.md
"""
import argparse
import json

NAMES = {"sqlite": "SQLite", "postgres": "PostgreSQL", "mysql": "MariaDB"}
TARGET_RATIO = 0.6
TARGET_P99_MS = 5.0
# Issue #14 ("Scale"): against a bare axum server (bench/ceiling) and with many tokens.
TARGET_HEALTHZ_VS_AXUM = 0.9
TARGET_HOT_VS_HEALTHZ = 0.85
TARGET_HOT_VS_AXUM = 0.75
TARGET_ALL_VS_SUBSET = 0.9
TARGET_IMPORT_ROWS_S = 20_000
TARGET_SAVES_S = 5_000  # on PostgreSQL
TARGET_SAVE_P99_MS = 10.0  # on PostgreSQL
TARGET_STORM_OVER_DELAY_MS = 30.0
TARGET_PAGING_DEEP_VS_START = 1.2
# Issue #15 (proxy): latency /v1/proxy adds to a direct call of the same upstream, 64 connections.
TARGET_PROXY_ADDED_P50_MS = 1.0


def ms(us):
    return f"{us / 1000:.2f}"


def mib(kib):
    return f"{kib / 1024:.1f}"


def errors(w):
    return w["non2xx"] + w["err_timeout"] + w["err_read"] + w["err_connect"] + w["err_write"]


def hit_pct(r):
    n = r.get("cache_hits", 0) + r.get("cache_misses", 0)
    return f"{100 * r['cache_hits'] / n:.0f} %" if n else "–"


def median_round(pairs, b, num, den):
    """The round whose num/den ratio is the median (lower middle), and all rounds' ratios."""
    a, z = pairs.get((b, num), {}), pairs.get((b, den), {})
    both = sorted((a[i]["wrk"]["rps"] / z[i]["wrk"]["rps"], i) for i in a if i in z and z[i]["wrk"]["rps"])
    if not both:
        return None, []
    return both[(len(both) - 1) // 2][1], sorted(both, key=lambda x: x[1])


def ceiling_round(pairs, b, test):
    """The round with the median test ÷ bare axum: (hot, /healthz, ceiling) wrk results, or None."""
    mid, _ = median_round(pairs, b, test, "ceiling")
    if mid is None or mid not in pairs.get((b, "healthz"), {}):
        return None
    return pairs[(b, test)][mid]["wrk"], pairs[(b, "healthz")][mid]["wrk"], pairs[(b, "ceiling")][mid]["wrk"]


def proxy_round(pairs, b):
    """The proxy round with the median added p50 (lower middle), and all rounds as (added p50 µs, round)."""
    rs = pairs.get((b, "proxy"), {})
    both = sorted((r["proxied"]["p50_us"] - r["direct"]["p50_us"], i) for i, r in rs.items())
    if not both:
        return None, []
    return both[(len(both) - 1) // 2][1], sorted(both, key=lambda x: x[1])


def per_req_us(cpu_ms, w):
    """CPU µs per request of a run (cpu_ms over the run, w its wrk result)."""
    return cpu_ms * 1000 / w["requests"] if cpu_ms is not None and w["requests"] else None


def num(x, digits=0):
    """12345.6 -> "12 346" (thin grouping keeps the table readable)."""
    return f"{x:,.{digits}f}".replace(",", " ")


def verdict(ok, applies=True):
    if ok is None:
        return "–"
    if not applies:
        return "(met)" if ok else "(not met)"
    return "met" if ok else "**NOT met**"


def targets_section(p, backends, by, pairs, rows, meta):
    """Issues #14 and #15: every figure against its target, one row per figure per backend."""
    t = []  # (figure, backend, measured, target, met?)

    def add(figure, b, measured, target, met):
        t.append((figure, NAMES.get(b, b), measured, target, met))

    for b in backends:
        r = by.get((b, "import"))
        if r and r["ms"]:
            v = r["rows"] / (r["ms"] / 1000)
            add(f"import zoho-csv rows/s ({r['rows']} rows)", b, num(v), f"≥ {num(TARGET_IMPORT_ROWS_S)}",
                verdict(v >= TARGET_IMPORT_ROWS_S))
        w = by.get((b, "wave"))
        if w and w.get("import_ms"):
            v = w["import_rows"] / (w["import_ms"] / 1000)
            add(f"import zoho-csv rows/s (the wave's {w['import_rows']} rows, into a filled table)", b, num(v),
                f"≥ {num(TARGET_IMPORT_ROWS_S)}", verdict(v >= TARGET_IMPORT_ROWS_S))
    for b in backends:
        r = by.get((b, "keys_rotate"))
        if r and "rows" in r:
            v = r["rows"] / (r["ms"] / 1000) if r["ms"] else 0
            extra = f"; {r['unreadable']} unreadable, exit {r['exit']}" if r.get("unreadable") or r.get("exit") else ""
            add("keys rotate rows/s (every row)", b, f"{num(v)} ({r['rows']} rows in {r['ms'] / 1000:.1f} s{extra})",
                "none; flat per row: compare rows/s at 10k and 1M", "info")
        elif r:
            add("keys rotate rows/s (every row)", b, f"failed: {r.get('error')} (exit {r.get('exit')})", "", "–")
    for b in backends:
        pg = b == "postgres"
        for test, label in (("save_insert", "insert"), ("save_update", "update")):
            r = by.get((b, test))
            if not r:
                continue
            w = r["wrk"]
            err = errors(w)
            add(f"save (PUT /v1/tokens, {label}) req/s", b, num(w["rps"]) + (f" ({err} errors)" if err else ""),
                f"≥ {num(TARGET_SAVES_S)}" + ("" if pg else " (PostgreSQL; info here)"),
                verdict(w["rps"] >= TARGET_SAVES_S and not err, pg))
            add(f"save ({label}) p99 ms", b, ms(w["p99_us"]),
                f"< {TARGET_SAVE_P99_MS:g}" + ("" if pg else " (PostgreSQL; info here)"),
                verdict(w["p99_us"] / 1000 < TARGET_SAVE_P99_MS, pg))
    delay = float(meta.get("provider_delay_ms", 200))
    for b in backends:
        r = by.get((b, "storm"))
        if not r:
            continue
        s_ = r["storm"]
        if "error" in s_:
            add("refresh storm: last caller's wait − provider delay", b, f"failed: {s_['error']}",
                f"≤ {TARGET_STORM_OVER_DELAY_MS:g} ms", "**NOT met**")
            continue
        over = s_["last_wait_ms"] - delay
        single = s_.get("provider_calls") == 1 and s_["statuses"].get("200") == s_["n"]
        add("refresh storm: last caller's wait − provider delay", b,
            f"{over:.1f} ms ({s_['last_wait_ms']} − {delay:g}; {s_['n']} callers, "
            f"{s_.get('provider_calls', '?')} provider call{'' if s_.get('provider_calls') == 1 else 's'})",
            f"≤ {TARGET_STORM_OVER_DELAY_MS:g} ms, 1 provider call", verdict(over <= TARGET_STORM_OVER_DELAY_MS and single))
    tokens = meta.get("tokens", "?")
    for b in backends:
        cr = ceiling_round(pairs, b, "hot")
        note = ""
        if cr:
            h, z, c = cr
            note = " (median round vs bare axum)"
            add("broker /healthz ÷ bare axum", b, f"{z['rps'] / c['rps']:.2f} ({num(z['rps'])} / {num(c['rps'])})",
                f"≥ {TARGET_HEALTHZ_VS_AXUM}", verdict(z["rps"] / c["rps"] >= TARGET_HEALTHZ_VS_AXUM))
        elif by.get((b, "hot")) and by.get((b, "healthz")):
            h, z = by[(b, "hot")]["wrk"], by[(b, "healthz")]["wrk"]
            note = " (median pair; no bare axum: CEILING=0)"
            add("broker /healthz ÷ bare axum", b, "not measured (CEILING=0)", f"≥ {TARGET_HEALTHZ_VS_AXUM}", "–")
        else:
            continue
        add(f"hot path ÷ broker /healthz, all {tokens} tokens" + note, b,
            f"{h['rps'] / z['rps']:.2f} ({num(h['rps'])} / {num(z['rps'])})",
            f"≥ {TARGET_HOT_VS_HEALTHZ}", verdict(h["rps"] / z["rps"] >= TARGET_HOT_VS_HEALTHZ))
        if cr:
            add("hot path ÷ bare axum" + note, b, f"{h['rps'] / c['rps']:.2f}",
                f"≥ {TARGET_HOT_VS_AXUM}", verdict(h["rps"] / c["rps"] >= TARGET_HOT_VS_AXUM))
        else:
            add("hot path ÷ bare axum", b, "not measured (CEILING=0)", f"≥ {TARGET_HOT_VS_AXUM}", "–")
        add("hot path p99 ms" + note, b, ms(h["p99_us"]), f"< {TARGET_P99_MS:g}",
            verdict(h["p99_us"] / 1000 < TARGET_P99_MS))
        mid, _ = median_round(pairs, b, "hot", "hot_subset")
        if mid is not None:
            a_, s_ = pairs[(b, "hot")][mid]["wrk"], pairs[(b, "hot_subset")][mid]["wrk"]
            add(f"hot path, all {tokens} ÷ the first {meta.get('hot_subset', '?')} (median round)", b,
                f"{a_['rps'] / s_['rps']:.2f} ({num(a_['rps'])} / {num(s_['rps'])})",
                f"≥ {TARGET_ALL_VS_SUBSET}", verdict(a_["rps"] / s_["rps"] >= TARGET_ALL_VS_SUBSET))
        else:
            add("hot path, all ÷ subset", b, f"not measured (TOKENS {tokens} ≤ HOT_SUBSET {meta.get('hot_subset', '?')})",
                f"≥ {TARGET_ALL_VS_SUBSET}", "–")
    for b in backends:
        wa, st = by.get((b, "warm_all")), by.get((b, "start"))
        if wa:
            per = (wa["rss_warm_kib"] - wa["rss_idle_kib"]) / wa["tokens"]
            add("memory per cached token ((RSS all cached − RSS idle) ÷ tokens)", b,
                f"{per:.2f} KiB ({wa['tokens']} tokens)", "none", "info")
            add("RSS with every token cached MiB", b, f"{mib(wa['rss_warm_kib'])} ({wa['tokens']} tokens)", "none", "info")
        if st:
            add("start with a migrated database ms (curl poll, 10 ms steps)", b, str(st["started_ms"]), "none", "info")
    su = by.get(("sqlite", "startup"))
    if su:
        add("start-up ms, fresh database, exec → first 200 (median)", "sqlite",
            f"{su['startup']['median_ms']} (min {su['startup']['min_ms']}, {su['startup']['runs']} runs)", "none", "info")
    for b in backends:
        r = by.get((b, "paging"))
        if not r:
            continue
        g = r["paging"]
        if g.get("again_first10_ms") and g.get("again_deep10_ms"):
            v = g["again_deep10_ms"] / g["again_first10_ms"]
            how = (f"{v:.2f} (full page {g['again_deep10_ms']} / {g['again_first10_ms']} ms, deep / first pages "
                   f"alternating; per row last / first 10 %: {g['us_per_row_last10pct']} / {g['us_per_row_first10pct']} µs)")
        elif g.get("us_per_row_last10pct") and g.get("us_per_row_first10pct"):
            v = g["us_per_row_last10pct"] / g["us_per_row_first10pct"]
            how = (f"{v:.2f} (µs per row, last / first 10 % of {g['rows']} rows: "
                   f"{g['us_per_row_last10pct']} / {g['us_per_row_first10pct']}; too few pages to repeat)")
        else:
            continue
        add("GET /v1/tokens paging: per-row cost deep ÷ start", b, how, f"≤ {TARGET_PAGING_DEEP_VS_START}",
            verdict(v <= TARGET_PAGING_DEEP_VS_START))
    for b in backends:
        w = by.get((b, "wave"))
        if not w:
            continue
        n, cap = w["tokens"], w["cap"]
        done = (w.get("refreshed") or 0) >= n
        wave_s = f"{w['wave_ms'] / 1000:.1f} s" if w.get("wave_ms") is not None else "no refresh call"
        add(f"wave: duration, first refresh call → last answer ({n} tokens, cap {cap}, "
            f"provider {w['provider_delay_ms']} ms)", b,
            wave_s + (f"; ideal {n * w['provider_delay_ms'] / cap / 1000:.1f} s" if cap else "")
            + (f"; first call {w['first_call_after_start_ms'] / 1000:.1f} s after exec"
               if w.get("first_call_after_start_ms") is not None else ""),
            "none", "info")
        add("wave: tokens refreshed ÷ N", b,
            f"{w.get('refreshed')} / {n} ({w.get('refresh_calls')} provider calls; {w.get('result')})",
            "all", verdict(done))
        add("wave: finished before the first expiry", b,
            ("yes" if w["before_first_expiry"] else "no")
            + f" (first expiry {w['first_expiry_after_start_ms'] / 1000:.0f} s after the wave broker's exec; "
            f"{w.get('late_refreshes')} refreshes answered after their token's expiry)",
            "yes", verdict(w["before_first_expiry"]))
        add("wave: max provider calls in flight ≤ cap", b, f"{w.get('max_in_flight')} (cap {cap})", f"≤ {cap}",
            verdict(w["max_in_flight"] <= cap if w.get("refresh_calls") else None))
        add("wave: refreshes during the in-use sweep (inline, hot path)", b,
            f"{w['sweep_inline_refreshes']} ({w['sweep_requests']} requests, {w['sweep_errors']} errors)",
            "0 expected", verdict(w["sweep_inline_refreshes"] == 0 and w["sweep_errors"] == 0))
    for b in backends:
        mid, _ = proxy_round(pairs, b)
        if mid is None:
            e = by.get((b, "proxy_error"))
            if e:
                add("proxy: added p50 (through /v1/proxy − direct)", b, f"failed: {e['error']}",
                    f"< {TARGET_PROXY_ADDED_P50_MS:g} ms", "**NOT met**")
            continue
        r = pairs[(b, "proxy")][mid]
        d, x = r["direct"], r["proxied"]
        added50, added99 = (x["p50_us"] - d["p50_us"]) / 1000, (x["p99_us"] - d["p99_us"]) / 1000
        err = errors(x) + errors(d)
        conns = r.get("conns", "?")
        add(f"proxy: added p50 ms, through /v1/proxy − direct to the same bare axum ({conns} connections, "
            "median round)", b,
            f"{added50:.2f} ({ms(x['p50_us'])} − {ms(d['p50_us'])})" + (f"; {err} errors" if err else ""),
            f"< {TARGET_PROXY_ADDED_P50_MS:g} ms", verdict(added50 < TARGET_PROXY_ADDED_P50_MS and not err))
        add("proxy: added p99 ms (same round)", b, f"{added99:.2f} ({ms(x['p99_us'])} − {ms(d['p99_us'])})",
            "none", "info")
        add("proxy: req/s through the proxy / direct (same round)", b,
            f"{num(x['rps'])} / {num(d['rps'])} ({x['rps'] / d['rps']:.2f})" if d["rps"] else "–", "none", "info")
    if meta.get("proxy", "").startswith("skipped"):
        add("proxy: added p50", "–", meta["proxy"], f"< {TARGET_PROXY_ADDED_P50_MS:g} ms", "–")
    if not t:
        return
    p("## Targets (issues #14, #15)")
    p("")
    p("Every figure against its target (details in the sections below). \"(met)\" / \"(not met)\" in "
      "parentheses: a target that applies to another backend, shown for information.")
    p("")
    p("| figure | backend | measured | target | met? |")
    p("|---|---|---|---|---|")
    for row in t:
        p("| " + " | ".join(str(x) for x in row) + " |")
    p("")


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
    for k in ("date", "commit", "binary", "cpu", "nproc", "mem", "kernel", "load", "pinning", "wrk",
              "postgres", "mariadb", "overrides", "proxy", "command"):
        if k in meta:
            p(f"- **{k}**: {meta[k]}")
    p("")

    # Which round each main-run table shows is settled below; the targets table reuses it.
    main_by = dict(by)
    for b in backends:
        hp, zp = pairs.get((b, "hot"), {}), pairs.get((b, "healthz"), {})
        both = sorted((hp[i]["wrk"]["rps"] / zp[i]["wrk"]["rps"], i) for i in hp if i in zp and zp[i]["wrk"]["rps"])
        if both:
            _, mid = both[(len(both) - 1) // 2]
            main_by[(b, "hot")], main_by[(b, "healthz")] = hp[mid], zp[mid]
    targets_section(p, backends, main_by, pairs, rows, meta)

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
            for t in ("ceiling", "hot_subset"):
                if mid in pairs.get((b, t), {}):
                    by[(b, t)] = pairs[(b, t)][mid]
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
    variants = (("hot_cold", "hot path, cold (start of the warm-up: tokens in turn, first use)"),
                ("hot", "hot path, warm (median pair)"),
                ("healthz", "/healthz (median pair)"),
                ("ceiling", "bare axum /healthz (same round)"),
                ("hot_subset", f"hot path, first {meta.get('hot_subset', 'N')} tokens only (same round)"),
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

    scale_section(p, backends, by, pairs, meta)
    proxy_section(p, backends, by, pairs, meta)

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

    wave_section(p, backends, by)

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
    p("| backend | tokens | RSS idle after start MiB | RSS after asking for every token once MiB | per cached token | RSS right after the hot path MiB | peak RSS (VmHWM) MiB | start with migrated DB ms (curl poll, 10 ms steps) |")
    p("|---|---:|---:|---:|---:|---:|---:|---:|")
    for b in backends:
        st, mem, wa = by.get((b, "start")), by.get((b, "memory")), by.get((b, "warm_all"))
        if not st or not mem:
            continue
        warm = per = ""
        if wa:
            warm = mib(wa["rss_warm_kib"])
            per = f"{(wa['rss_warm_kib'] - wa['rss_idle_kib']) * 1024 / wa['tokens']:.0f} B"
        p(f"| {NAMES.get(b, b)} | {wa['tokens'] if wa else ''} | {mib(st['rss_idle_kib'])} | {warm} | {per} | "
          f"{mib(mem['rss_after_hot_kib'])} | {mib(mem['hwm_after_hot_kib'])} | {st['started_ms']} |")
    p("")
    p("Per cached token = (RSS after the warm-up has asked for every token once − RSS idle) ÷ tokens: "
      "the decrypted token in the access cache plus everything else that grew meanwhile (allocator "
      "arenas, the use-mark and audit queues, the database driver's caches); an upper bound.")
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


def proxy_section(p, backends, by, pairs, meta):
    """Issue #15: what /v1/proxy adds to a direct call of the same upstream."""
    have = [b for b in backends if (b, "proxy") in pairs or (b, "proxy_error") in by]
    note = meta.get("proxy", "")
    if not have and not note.startswith("skipped"):
        return
    p("## Proxy overhead (#15)")
    p("")
    if note.startswith("skipped"):
        p(f"Not measured: the proxy step was {note}.")
        p("")
        if not have:
            return
    p("The upstream is the bare-axum server (`bench/ceiling`, `GET /healthz` → \"ok\"); provider `fake` lists "
      "it in `api_base_urls` (a config file: `--config-dir`/`--env`), and one token of `fake` has it as "
      "its `api_domain`. Each round, on one broker with the two runs side by side: wrk on the bare axum "
      "`GET /healthz` directly, then wrk on `GET /v1/proxy/{id}/healthz` through the broker (after "
      f"{meta.get('rewarm', '?')} s unmeasured), the same connections, duration and `Authorization` header, "
      "each after a settle. Added = through the proxy − direct, per percentile. Target: added p50 < "
      f"{TARGET_PROXY_ADDED_P50_MS:g} ms. The direct figure is bare axum on loopback, so the added latency "
      "is the broker's whole request path: JWT check, token lookup (access cache), the audit row every "
      "proxied call writes, metrics, the upstream call over the broker's connection pool (reqwest), and "
      "streaming the answer back; the upstream's own time (tiny here) is in both figures. At a fixed "
      "number of connections in a closed loop the latency also includes queueing: 64 connections ÷ "
      "throughput is the mean, so a slower path adds latency twice (its own cost and the queue).")
    p("")
    p("| backend | direct req/s | p50 ms | p99 ms | proxied req/s | p50 ms | p99 ms | added p50 ms | "
      "added p99 ms | proxied ÷ direct req/s | broker CPU µs per proxied call | upstream CPU µs per call, "
      "direct / proxied | broker's upstream statuses | broker's mean per call µs | target |")
    p("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|---:|---|")
    rounds = {}
    for b in have:
        mid, allr = proxy_round(pairs, b)
        if mid is None:
            e = by.get((b, "proxy_error"))
            p(f"| {NAMES.get(b, b)} | | | | | | | | | | | | {e['error'] if e else ''} | | FAILED |")
            continue
        rounds[b] = allr
        r = pairs[(b, "proxy")][mid]
        d, x = r["direct"], r["proxied"]
        a50, a99 = x["p50_us"] - d["p50_us"], x["p99_us"] - d["p99_us"]
        err = errors(x) + errors(d)
        bc = per_req_us(r.get("broker_cpu_ms"), x)
        ud, up = per_req_us(r.get("upstream_cpu_direct_ms"), d), per_req_us(r.get("upstream_cpu_ms"), x)
        m = r.get("broker_metrics") or {}
        sts = ", ".join(f"{v}×{k}" for k, v in sorted((m.get("statuses") or {}).items())) or "–"
        ok = a50 / 1000 < TARGET_PROXY_ADDED_P50_MS and not err
        p(f"| {NAMES.get(b, b)} | {d['rps']:.0f} | {ms(d['p50_us'])} | {ms(d['p99_us'])} | {x['rps']:.0f} | "
          f"{ms(x['p50_us'])} | {ms(x['p99_us'])} | **{a50 / 1000:.2f}** | {a99 / 1000:.2f} | "
          f"{x['rps'] / d['rps']:.2f} | {f'{bc:.0f}' if bc is not None else '–'} | "
          f"{f'{ud:.1f}' if ud is not None else '–'} / {f'{up:.1f}' if up is not None else '–'} | {sts} | "
          f"{m.get('mean_us') if m.get('mean_us') is not None else '–'} | {'met' if ok else 'NOT met'}"
          + (f" ({errors(d)} direct / {errors(x)} proxied errors)" if err else "") + " |")
    if any(len(v) > 1 for v in rounds.values()):
        p("")
        p("Every round (p50 ms direct / through the proxy → added, and req/s direct / through the proxy): "
          + "; ".join(f"{NAMES.get(b, b)}: " + ", ".join(
              "round {}: {} / {} → {:.2f} ({:.0f} / {:.0f})".format(
                  i, ms(pairs[(b, 'proxy')][i]['direct']['p50_us']), ms(pairs[(b, 'proxy')][i]['proxied']['p50_us']),
                  a / 1000, pairs[(b, 'proxy')][i]['direct']['rps'], pairs[(b, 'proxy')][i]['proxied']['rps'])
              for a, i in v) for b, v in rounds.items()) + ". The table shows the round with the median added p50.")
    p("")
    p("Broker CPU per proxied call: the broker's user + system CPU during the proxied run ÷ its requests "
      "(all cores). Upstream CPU per call: the bare-axum process's CPU ÷ requests in each run (through the "
      "proxy it is served over the broker's pooled connections instead of wrk's). The broker's upstream "
      "statuses and mean per call come from its own `/metrics` (`proxy_requests_total`, "
      "`proxy_request_duration_seconds`: from the token lookup to the upstream's status and headers) over "
      "the measured run; anything but 200 there, or wrk errors, is a failure of the step, not overhead.")
    p("")


def wave_section(p, backends, by):
    """The background refresh wave."""
    waves = [(b, by[(b, "wave")]) for b in backends if (b, "wave") in by]
    if not waves:
        return
    p("## Background refresh wave")
    p("")
    p("N more tokens of a second fake provider (`wave`), imported after the main steps, their access "
      "tokens expiring evenly over 180–600 s after the seed was written. Each is asked for once "
      "(`GET …/access-token`, in order) by a broker with background refresh off, so it counts as in "
      "use; then a broker with background refresh on (every 1 s, 600 s ahead, used within 3600 s, "
      "concurrency = cap) refreshes them; the provider answers after a fixed delay and counts calls, "
      "distinct refresh tokens and calls in flight. Wave = first refresh call → last answer; ideal = "
      "N × delay ÷ cap.")
    p("")
    p("| backend | tokens | cap | delay ms | import s | sweep s (errors) | inline refreshes in the sweep | "
      "first call after exec s | wave s | ideal s | refreshed | provider calls | max in flight | "
      "first expiry after exec s | done before it | late | broker CPU s | result |")
    p("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---|")
    for b, w in waves:
        def sec(x):
            return f"{x / 1000:.1f}" if x is not None else "–"
        ideal = w["tokens"] * w["provider_delay_ms"] / w["cap"] if w["cap"] else None
        p(f"| {NAMES.get(b, b)} | {w['tokens']} | {w['cap']} | {w['provider_delay_ms']} | {sec(w['import_ms'])} | "
          f"{sec(w['sweep_ms'])} ({w['sweep_errors']}) | {w['sweep_inline_refreshes']} | "
          f"{sec(w.get('first_call_after_start_ms'))} | {sec(w.get('wave_ms'))} | {sec(ideal)} | "
          f"{w.get('refreshed')} | {w.get('refresh_calls')} | {w.get('max_in_flight')} | "
          f"{sec(w.get('first_expiry_after_start_ms'))} | {'yes' if w['before_first_expiry'] else 'no'} | "
          f"{w.get('late_refreshes')} | {sec(w.get('broker_cpu_ms'))} | {w.get('result')} |")
    p("")
    p("Late: refresh calls answered after the expiry of the token they refresh. Broker CPU: the wave "
      "broker's user + system CPU from its start to the end of the wave.")
    p("")


def scale_section(p, backends, by, pairs, meta):
    """Issue #14: the bare-axum ceiling, many tokens, listing every row."""
    tokens, subset = meta.get("tokens", "?"), meta.get("hot_subset", "10000")
    have_ceiling = any((b, "ceiling") in pairs for b in backends)
    have_subset = any((b, "hot_subset") in pairs for b in backends)
    have_paging = any((b, "paging") in by for b in backends)
    if not (have_ceiling or have_subset or have_paging):
        return
    p("## Scale (#14)")
    p("")
    if have_ceiling:
        p("### Against bare axum")
        p("")
        p("Each round: the hot path (a random one of all stored tokens per request"
          + (f"; with many tokens also over the first {subset} only" if have_subset else "")
          + "), the broker's `GET /healthz`, then `GET /healthz` of a bare axum server "
          "(`bench/ceiling`: axum `Router` with one route returning \"ok\", `axum::serve`, multi-thread "
          "tokio, the broker's axum and tokio versions, system allocator; the broker stays up, idle), "
          "all with the same wrk settings and the same client work per request. Targets: broker "
          f"`/healthz` ÷ bare axum ≥ {TARGET_HEALTHZ_VS_AXUM}, hot path ÷ broker `/healthz` ≥ "
          f"{TARGET_HOT_VS_HEALTHZ}, hot path ÷ bare axum ≥ {TARGET_HOT_VS_AXUM}, hot-path p99 < "
          f"{TARGET_P99_MS:g} ms. Each row is the round with the median hot path ÷ bare axum.")
        p("")
        p("| backend | hot path over | hot path req/s | p99 ms | broker /healthz req/s | p99 ms | bare axum req/s | "
          "p99 ms | /healthz ÷ axum | hot ÷ /healthz | hot ÷ axum | target |")
        p("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
        rounds = {}
        for b in backends:
            for test, over in (("hot", f"all {tokens} tokens"), ("hot_subset", f"the first {subset}")):
                mid, allr = median_round(pairs, b, test, "ceiling")
                if mid is None or mid not in pairs.get((b, "healthz"), {}):
                    continue
                h = pairs[(b, test)][mid]["wrk"]
                z = pairs[(b, "healthz")][mid]["wrk"]
                c = pairs[(b, "ceiling")][mid]["wrk"]
                r1, r2, r3 = z["rps"] / c["rps"], h["rps"] / z["rps"], h["rps"] / c["rps"]
                bad = [x for x, ok in (("/healthz ÷ axum", r1 >= TARGET_HEALTHZ_VS_AXUM),
                                       ("hot ÷ /healthz", r2 >= TARGET_HOT_VS_HEALTHZ),
                                       ("hot ÷ axum", r3 >= TARGET_HOT_VS_AXUM),
                                       ("p99", h["p99_us"] / 1000 < TARGET_P99_MS)) if not ok]
                verdict = "met" if not bad else "NOT met (" + ", ".join(bad) + ")"
                err = errors(h) + errors(z) + errors(c)
                p(f"| {NAMES.get(b, b)} | {over} | {h['rps']:.0f} | {ms(h['p99_us'])} | {z['rps']:.0f} | "
                  f"{ms(z['p99_us'])} | {c['rps']:.0f} | {ms(c['p99_us'])} | {r1:.2f} | {r2:.2f} | {r3:.2f} | "
                  f"{verdict}" + (f" ({err} errors)" if err else "") + " |")
                rounds[(b, test)] = allr
        if any(len(v) > 1 for v in rounds.values()):
            p("")
            p("Every round (hot path / broker `/healthz` / bare axum req/s → /healthz ÷ axum, hot ÷ "
              "/healthz, hot ÷ axum): " + "; ".join(
                  f"{NAMES.get(b, b)}{', first ' + subset if t == 'hot_subset' else ''}: " + ", ".join(
                      "{:.0f}/{:.0f}/{:.0f} → {:.2f}, {:.2f}, {:.2f}".format(
                          pairs[(b, t)][i]["wrk"]["rps"], pairs[(b, "healthz")][i]["wrk"]["rps"],
                          pairs[(b, "ceiling")][i]["wrk"]["rps"],
                          pairs[(b, "healthz")][i]["wrk"]["rps"] / pairs[(b, "ceiling")][i]["wrk"]["rps"],
                          pairs[(b, t)][i]["wrk"]["rps"] / pairs[(b, "healthz")][i]["wrk"]["rps"], r)
                      for r, i in v if i in pairs.get((b, "healthz"), {}))
                  for (b, t), v in rounds.items()) + ".")
        cpu = {b: [pairs[(b, "ceiling")][i].get("broker_cpu_ms") for i in sorted(pairs.get((b, "ceiling"), {}))]
               for b in backends}
        if any(v and None not in v for v in cpu.values()):
            p("")
            p("The idle broker's own CPU while the bare axum server was measured (background work left "
              "from the runs before: audit rows, use marks, cache re-checks), per round: " + "; ".join(
                  f"{NAMES.get(b, b)} " + ", ".join(f"{x} ms" for x in v)
                  for b, v in cpu.items() if v and None not in v) + ".")
        settled = {b: [r["settle_ms"] for (bb, t), rs in pairs.items() if bb == b
                       for r in rs.values() if "settle_ms" in r] for b in backends}
        if any(settled.values()):
            p("")
            p("Before each measured run of the main run the script waited until the broker was idle "
              f"(under 10 % of a core over 0.5 s, at most {meta.get('settle_max', '?')} s): longest wait "
              + "; ".join(f"{NAMES.get(b, b)} {max(v) / 1000:.1f} s" for b, v in settled.items() if v)
              + " (0.5 s is one idle sample).")
        p("")
    if have_subset:
        p(f"### Many tokens: {tokens} against the first {subset}")
        p("")
        p(f"Each round measures the hot path twice on the same broker: a random one of all {tokens} "
          f"tokens per request, then (after {meta.get('rewarm', 'a')} s unmeasured warm-up) a random "
          f"one of the first {subset}. Target: all ÷ subset ≥ {TARGET_ALL_VS_SUBSET} (within 10 %). "
          "The cache hit rate is the share of those requests the access cache answered "
          "(`token_cache_total`): a token must be asked for again within the cache's time to live "
          "(`tokens.access_cache_ttl_ms`, 60 s by default; see overrides) to be a hit. The table shows "
          "the round with the median ratio.")
        p("")
        p(f"| backend | all {tokens}: req/s | p50 ms | p99 ms | cache hits | first {subset}: req/s | "
          "p50 ms | p99 ms | cache hits | all ÷ subset | target |")
        p("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
        rounds = {}
        for b in backends:
            mid, allr = median_round(pairs, b, "hot", "hot_subset")
            if mid is None:
                continue
            a, s_ = pairs[(b, "hot")][mid], pairs[(b, "hot_subset")][mid]
            h, z = a["wrk"], s_["wrk"]
            r = h["rps"] / z["rps"]
            err = errors(h) + errors(z)
            p(f"| {NAMES.get(b, b)} | {h['rps']:.0f} | {ms(h['p50_us'])} | {ms(h['p99_us'])} | {hit_pct(a)} | "
              f"{z['rps']:.0f} | {ms(z['p50_us'])} | {ms(z['p99_us'])} | {hit_pct(s_)} | {r:.2f} | "
              f"{'met' if r >= TARGET_ALL_VS_SUBSET else 'NOT met'}" + (f" ({err} errors)" if err else "") + " |")
            rounds[b] = allr
        if any(len(v) > 1 for v in rounds.values()):
            p("")
            p("Every round (all / subset req/s = ratio): " + "; ".join(
                f"{NAMES.get(b, b)}: " + ", ".join(
                    f"{pairs[(b, 'hot')][i]['wrk']['rps']:.0f}/{pairs[(b, 'hot_subset')][i]['wrk']['rps']:.0f} = {r:.2f}"
                    for r, i in v) for b, v in rounds.items()) + ".")
        p("")
    rows = []
    for b in backends:
        imp, wa, cli, pg = by.get((b, "import")), by.get((b, "warm_all")), by.get((b, "cli_list")), by.get((b, "paging"))
        if imp:
            rows.append(f"| {NAMES.get(b, b)} | `token-broker import zoho-csv` | {imp['rows']} | "
                        f"{imp['ms'] / 1000:.1f} s | {imp['rows'] / (imp['ms'] / 1000):.0f} rows/s |")
        if wa:
            rows.append(f"| {NAMES.get(b, b)} | warm-up: every token asked for once, in order (wrk) | "
                        f"{wa['requests']} requests | {wa['ms'] / 1000:.1f} s | "
                        f"{wa['requests'] / (wa['ms'] / 1000):.0f} req/s |")
        rot = by.get((b, "keys_rotate"))
        if rot and "rows" in rot:
            rows.append(f"| {NAMES.get(b, b)} | `token-broker keys rotate` (every row re-encrypted under a new key, "
                        f"broker stopped) | {rot['rows']} | {rot['ms'] / 1000:.1f} s | "
                        f"{rot['rows'] / (max(rot['ms'], 1) / 1000):.0f} rows/s |")
        if cli:
            rows.append(f"| {NAMES.get(b, b)} | `token-broker tokens list > /dev/null` | {cli['rows']} | "
                        f"{cli['ms'] / 1000:.1f} s | {cli['rows'] / (cli['ms'] / 1000):.0f} rows/s |")
        if pg:
            g = pg["paging"]
            rows.append(f"| {NAMES.get(b, b)} | `GET /v1/tokens?limit={g['limit']}`, every page (next_cursor) | "
                        f"{g['rows']} ({g['pages']} pages) | {g['total_ms'] / 1000:.1f} s | "
                        f"{g['rows'] / (g['total_ms'] / 1000):.0f} rows/s |")
    if rows:
        p("### Bulk: import, warm-up, key rotation, listing")
        p("")
        p("| backend | what | rows | time | rate |")
        p("|---|---|---:|---:|---:|")
        for r in rows:
            p(r)
        p("")
    if have_paging:
        p("Does a page deep in the list cost more? Each page timed from the request written to the "
          "body read, one keep-alive connection (`bench/paging.py`):")
        p("")
        p("| backend | µs per row, first 10 % of rows | µs per row, last 10 % | µs per row, all | "
          "full page ms, first 10 pages | full page ms, 10 pages from 90 % of the way | "
          "the same pages again, alternating: first / deep ms |")
        p("|---|---:|---:|---:|---:|---:|---:|")
        for b in backends:
            pg = by.get((b, "paging"))
            if not pg:
                continue
            g = pg["paging"]
            deep = f"{g['deep10_ms']} ({g['deep10_n']} pages from page {g['deep10_from_page']})" \
                if g.get("deep10_ms") is not None else "–"
            first = f"{g['first10_ms']} ({g['first10_n']} pages)" if g.get("first10_ms") is not None else "–"
            again = f"{g['again_first10_ms']} / {g['again_deep10_ms']} (median of {g['again_repeat']})" \
                if g.get("again_first10_ms") is not None else "–"
            p(f"| {NAMES.get(b, b)} | {g['us_per_row_first10pct']} | {g['us_per_row_last10pct']} | "
              f"{g['us_per_row_all']} | {first} | {deep} | {again} |")
        p("")


if __name__ == "__main__":
    main()
