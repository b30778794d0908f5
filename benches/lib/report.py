#!/usr/bin/env python3
"""Turns the raw figures of benches/run.sh into docs/PERFORMANCE.md.

Usage: report.py META_JSON RESULTS_JSONL > report.md

Every figure is the median over the repetitions of one measurement. CPU is
the server's own utime+stime from /proc/PID/stat (all its processes and
threads), divided by the requests the load generator completed.
"""

import json
import statistics
import sys

NAMES = {
    "direct": "direct (the upstream, no proxy)",
    "nginx": "nginx, plain reverse proxy",
    "haproxy": "HAProxy, jwt_verify + role + rate limit",
    "minimal": "minimal hyper 1 + hyper-util proxy, current-thread runtime",
    "simgate-pass": "simgate, passthrough (proxy only)",
    "simgate-pass-ws": "simgate, passthrough, work-stealing runtime",
    "simgate-pass-base": "simgate, passthrough (baseline binary)",
    "simgate-full": "simgate, full stack (audit flush batch)",
    "simgate-full-log": "simgate, full stack, access log on",
    "simgate-full-base": "simgate, full stack (baseline binary)",
    "simgate-full-always": "simgate, full stack (audit flush always)",
    "simgate-full-nocache": "simgate, full stack, token cache off",
    "simgate-full-redis": "simgate, full stack, per-client quotas in Redis",
}
WORKLOADS = {
    "get": "Read path: `GET /sim-integrations/v1/{id}`",
    "patch": "Mutation path: `PATCH /sim-integrations/v1/{id}` (one-operation JSON Patch)",
}


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def fmt(value, digits=0, unit=""):
    if value is None:
        return "—"
    return f"{value:,.{digits}f}{unit}"


def ratio(a, b):
    if a is None or b is None or b == 0:
        return None
    return a / b


def parse(run, clk):
    """The figures of one run, whatever the load generator."""
    load = run["load"]
    cpu_s = run["ticks"] / clk
    wall_s = run["wall_ns"] / 1e9
    fig = {"cpu_s": cpu_s, "busy": cpu_s / wall_s if wall_s else None}
    if run["kind"] == "rate":  # h2load, through h2load.py
        fig.update(
            requests=load["requests"],
            ok=load["ok"],
            failed=load["failed"],
            rps=load.get("rps"),
            p50=load.get("p50_ms"),
            p99=load.get("p99_ms"),
            p999=load.get("p999_ms"),
            achieved=load["ok"] / run["secs"] if run.get("secs") else None,
            offered=run.get("offered_rate"),
        )
    else:  # wrk
        e = load["errors"]
        requests = load["requests"]
        failed = e["status"] + e["connect"] + e["read"] + e["write"] + e["timeout"]
        fig.update(
            requests=requests,
            ok=requests - e["status"],
            failed=failed,
            rps=requests / (load["duration_us"] / 1e6) if load["duration_us"] else None,
        )
    fig["cpu_us"] = cpu_s / fig["requests"] * 1e6 if fig["requests"] else None
    ours = run["ticks"] + run["loadgen_cpu_s"] * clk
    if run["config"] != "direct":
        ours += run["upstream_ticks"]
    total = run["machine_total_ticks"]
    fig["others"] = max(0.0, (run["machine_busy_ticks"] - ours) / total) if total else None
    return fig


def ms(seconds):
    return None if seconds is None else seconds * 1000


def summarise(runs, clk):
    """{(config, workload, kind): {figure: median}} plus failure counts."""
    groups = {}
    for run in runs:
        key = (run["config"], run["workload"], run["kind"])
        groups.setdefault(key, []).append(parse(run, clk))
    out = {}
    for key, figs in groups.items():
        merged = {k: median([f[k] for f in figs]) for k in figs[0] if k != "failed"}
        merged["failed"] = sum(f["failed"] for f in figs)
        merged["n"] = len(figs)
        out[key] = merged
    return out


def main():
    meta_doc = json.load(open(sys.argv[1]))
    runs = [json.loads(line) for line in open(sys.argv[2]) if line.strip()]
    meta = meta_doc["meta"]
    configs = {c["config"]: c for c in meta_doc["configs"]}
    clk = meta["clk_tck"]
    s = summarise(runs, clk)
    w = sys.stdout.write

    title = "# simgate performance"
    if meta["preliminary"]:
        title += " (preliminary)"
    if meta["quick"]:
        title += " (quick mode: one short run each, not for comparison)"
    w(title + "\n\n")
    w("Written by `benches/run.sh` (see `benches/README.md` for how to run it and read it). ")
    w("Every figure comes from one run of the harness; each cell is the median of ")
    w(f"{meta['runs']} repetition(s).\n\n")
    if meta["preliminary"]:
        others = median([f.get("others") for f in s.values()])
        w("**Preliminary:** measured while other engineers were compiling on the same ")
        w(f"2-core machine (other processes used a median {fmt(pct(others), 0, ' %')} of its CPU ")
        w("during the measurements, so each server got a fraction of its core). Saturation ")
        w("throughput and tail latency mostly measure that contention; CPU per request is ")
        w("the steadiest figure here. ")
        off = (configs.get("simgate-full") or {}).get("layers_off")
        if off:
            w(f"Layers not yet accepted by this build, left out of the full stack: {off}. ")
        w("\n\n")

    w("## Machine and versions\n\n")
    dirty = " (with uncommitted changes)" if meta["dirty"] else ""
    rows = [
        ("date", meta["date"]),
        ("machine", f"{meta['cpu']}, {meta['ncpu']} cores, {meta['mem']}; {meta['os']}, {meta['kernel']}"),
        ("load average before the run", meta["load_before"]),
        ("simgate", f"{meta['simgate']}, commit {meta['commit']}{dirty}, release build"),
        ("nginx", meta["nginx"]),
        ("HAProxy", meta["haproxy"]),
        ("load generators", f"{meta['wrk']} (saturation, `-t1`); {meta['h2load']} (fixed rate, HTTP/1.1)"),
        ("upstream behind the proxies", {"static": "nginx (1 worker, on the load core) answering one fixed JSON", "reference": "simgate's reference SIM Integrations API"}.get(meta.get("upstream"), meta.get("upstream", "?"))),
    ]
    if meta.get("fsync_ms"):
        rows.append(("fsync on the audit trail's disk", f"{meta['fsync_ms']} ms (512-byte `dd oflag=dsync`, after the run)"))
    if meta["pin"]:
        layout = (
            f"server under test pinned to core {meta['sut_cpu']} with one worker "
            f"(nginx `worker_processes 1`, HAProxy `nbthread 1`, simgate: one worker, as its runtime sees one core); "
            f"load generator and reference upstream on core(s) {meta['load_cpu']}"
        )
    else:
        layout = f"no pinning; every server runs {meta['workers']} workers"
    rows.append(("cores", layout))
    rows.append((
        "workloads",
        f"fixed rate: {meta['rate']} req/s (GET), {meta.get('patch_rate', meta['rate'])} req/s (PATCH) "
        f"for {meta['rate_secs']} s over {meta['rate_conns']} connections "
        f"(h2load `--rps`, latency from each request's send to its response's end); saturation: {meta['conns']} connections for {meta['sat_secs']} s (wrk, 1 thread); "
        f"load phase took {meta['elapsed']} s",
    ))
    w("| | |\n|---|---|\n")
    for k, v in rows:
        w(f"| {k} | {v} |\n")
    w("\n")

    full = configs.get("simgate-full")
    if full:
        w("simgate full stack, layers active: ")
        w(f"**{full['layers_on'] or 'none (proxy core only)'}**")
        if full["layers_off"]:
            w(f"; not yet accepted by this build, left out: {full['layers_off']}")
        w(".\n\n")
    for c in configs.values():
        if c["state"] != "ok" or c["note"]:
            w(f"- **{NAMES.get(c['config'], c['config'])}**: {c['state']}. {c['note']}\n")
    w("\n")

    w("## Summary: the read path (`GET`), the table of issue #14\n\n")
    w("Saturation with `wrk -t1 -c" + str(meta["conns"]) + "` (req/s, and the server's CPU per request), ")
    w(f"p99 at a fixed {meta['rate']} req/s (h2load).\n\n")
    w("| | req/s | CPU µs per request | p99 at fixed rate | server core busy |\n|---|---:|---:|---:|---:|\n")
    for name in ["nginx", "minimal", "simgate-pass", "simgate-pass-ws", "simgate-pass-base",
                 "simgate-full", "simgate-full-log", "simgate-full-base", "simgate-full-nocache",
                 "simgate-full-redis",
                 "haproxy", "direct"]:
        sat = s.get((name, "get", "sat"))
        rate = s.get((name, "get", "rate")) or {}
        if not sat:
            continue
        w(f"| {NAMES[name]} | {fmt(sat.get('rps'))} | {fmt(sat.get('cpu_us'), 1)} | "
          f"{fmt(rate.get('p99'), 2, ' ms')} | {fmt(pct(sat.get('busy')), 0, ' %')} |\n")
    w("\n")

    for wl, heading in WORKLOADS.items():
        w(f"## {heading}\n\n")
        offered = meta["rate"] if wl == "get" else meta.get("patch_rate", meta["rate"])
        w(f"Latency at a fixed offered rate of {offered} req/s; throughput at saturation.\n\n")
        w("| configuration | req/s at saturation | achieved req/s at fixed rate | p50 ms | p99 ms | p99.9 ms | ")
        w(f"CPU µs / req (saturation) | CPU µs / req ({offered}/s) | server core busy at saturation | ")
        w("idle RSS MB | peak RSS MB | failed requests |\n")
        w("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
        overloaded_any = False
        for name in NAMES:
            rate = s.get((name, wl, "rate"))
            sat = s.get((name, wl, "sat"))
            if not rate and not sat:
                continue
            rate = rate or {}
            sat = sat or {}
            conf = configs.get(name, {})
            failed = rate.get("failed", 0) + sat.get("failed", 0)
            achieved = fmt(rate.get("achieved"))
            if rate.get("achieved") is not None and rate["achieved"] < 0.9 * offered:
                achieved += " ⚠"
                overloaded_any = True
            w(
                f"| {NAMES[name]} | {fmt(sat.get('rps'))} | {achieved} | {fmt(rate.get('p50'), 3)} | "
                f"{fmt(rate.get('p99'), 3)} | {fmt(rate.get('p999'), 3)} | "
                f"{fmt(sat.get('cpu_us'), 1)} | {fmt(rate.get('cpu_us'), 1)} | "
                f"{fmt(pct(sat.get('busy')), 0, ' %')} | {fmt(mb(conf.get('idle_kb')), 1)} | "
                f"{fmt(mb(conf.get('peak_kb')), 1)} | {failed} |\n"
            )
        if overloaded_any:
            w("\n⚠ could not keep up with the offered rate (achieved under 90 % of it): its ")
            w("latency figures describe a queue, and requests never sent are missing from them.\n")
        others = median([v.get("others") for (c, wl2, k), v in s.items() if wl2 == wl])
        w(f"\nOther processes on the machine used a median {fmt(pct(others), 0, ' %')} of its CPU ")
        w("during these runs.\n\n")

        w("Ratios (figure of the first configuration over the second):\n\n")
        w("| | req/s at saturation | CPU per request | p99 at fixed rate | added p99 over direct (ms) |\n")
        w("|---|---:|---:|---:|---:|\n")
        pairs = [
            ("simgate-full", "nginx"),
            ("simgate-full", "haproxy"),
            ("simgate-full", "direct"),
            ("simgate-pass", "nginx"),
            ("simgate-pass", "minimal"),
            ("simgate-pass", "simgate-pass-ws"),
            ("simgate-pass", "simgate-pass-base"),
            ("simgate-full", "simgate-full-base"),
            ("simgate-full-log", "simgate-full"),
            ("minimal", "nginx"),
            ("simgate-pass", "direct"),
            ("haproxy", "nginx"),
            ("nginx", "direct"),
        ]
        if wl == "patch":
            pairs.insert(3, ("simgate-full-always", "simgate-full"))
        else:
            pairs.insert(3, ("simgate-full-nocache", "haproxy"))
            pairs.insert(4, ("simgate-full-redis", "simgate-full"))
        direct_p99 = (s.get(("direct", wl, "rate")) or {}).get("p99")
        for a, b in pairs:
            ra, rb = s.get((a, wl, "rate")), s.get((b, wl, "rate"))
            sa, sb = s.get((a, wl, "sat")), s.get((b, wl, "sat"))
            if not (ra or sa) or not (rb or sb):
                continue
            ra, rb, sa, sb = ra or {}, rb or {}, sa or {}, sb or {}
            added = None
            if ra.get("p99") is not None and direct_p99 is not None:
                added = ra["p99"] - direct_p99
            w(
                f"| {short(a)} / {short(b)} | {fmt(ratio(sa.get('rps'), sb.get('rps')), 2)} | "
                f"{fmt(ratio(sa.get('cpu_us'), sb.get('cpu_us')), 2)} | "
                f"{fmt(ratio(ra.get('p99'), rb.get('p99')), 2)} | {fmt(added, 3) if a != 'direct' else '—'} |\n"
            )
        w("\n")

    w("## Targets\n\n")
    w("| target | where we stand | met |\n|---|---|---|\n")
    g = lambda c, k, f: (s.get((c, "get", k)) or {}).get(f)
    for text, value, ok in targets(g, configs):
        w(f"| {text} | {value} | {ok} |\n")
    w("\n")
    w("Targets are reported, never enforced: no figure here fails CI. A target marked ")
    w("\"n/a\" could not be measured in this run (a configuration missing or failed). ")
    w("Saturation throughput only compares proxies when the server core was the bottleneck ")
    w("(\"server core busy\" near 100 %); below that the load generator's core, or other ")
    w("load on the machine, was the limit and CPU per request is the figure to compare.\n")


def targets(g, configs):
    """The targets of issue #14 (read path), against nginx on the same run."""
    nginx_rps, nginx_cpu, nginx_p99 = g("nginx", "sat", "rps"), g("nginx", "sat", "cpu_us"), g("nginx", "rate", "p99")
    pass_cpu = g("simgate-pass", "sat", "cpu_us")
    full_rps, full_cpu, full_p99 = g("simgate-full", "sat", "rps"), g("simgate-full", "sat", "cpu_us"), g("simgate-full", "rate", "p99")
    log_cpu = g("simgate-full-log", "sat", "cpu_us")
    rows = []

    def row(text, value, cond):
        rows.append((text, value, "n/a" if cond is None else ("yes" if cond else "**no**")))

    r = ratio(pass_cpu, nginx_cpu)
    row("passthrough: CPU per request ≤ 1.15 × nginx's",
        f"{fmt(r, 2)}× ({fmt(pass_cpu, 1)} vs {fmt(nginx_cpu, 1)} µs)" if r else "—", None if r is None else r <= 1.15)
    r = ratio(full_rps, nginx_rps)
    row("full stack, cached token: ≥ 0.85 × nginx's req/s",
        f"{fmt(r, 2)}× ({fmt(full_rps)} vs {fmt(nginx_rps)})" if r else "—", None if r is None else r >= 0.85)
    r = ratio(full_cpu, nginx_cpu)
    row("full stack, cached token: CPU per request ≤ 1.3 × nginx's",
        f"{fmt(r, 2)}× ({fmt(full_cpu, 1)} vs {fmt(nginx_cpu, 1)} µs)" if r else "—", None if r is None else r <= 1.3)
    added = None if full_p99 is None or nginx_p99 is None else full_p99 - nginx_p99
    row("full stack: p99 at the fixed rate ≤ nginx's + 0.2 ms",
        f"{fmt(added, 3)} ms above nginx ({fmt(full_p99, 3)} vs {fmt(nginx_p99, 3)} ms)" if added is not None else "—",
        None if added is None else added <= 0.2)
    cost = None if log_cpu is None or full_cpu is None else log_cpu - full_cpu
    row("access log on costs ≤ 1.5 µs per request",
        f"{fmt(cost, 1)} µs ({fmt(log_cpu, 1)} vs {fmt(full_cpu, 1)} µs)" if cost is not None else "—",
        None if cost is None else cost <= 1.5)
    redis_p99, redis_cpu = g("simgate-full-redis", "rate", "p99"), g("simgate-full-redis", "sat", "cpu_us")
    redis_p50, full_p50 = g("simgate-full-redis", "rate", "p50"), g("simgate-full", "rate", "p50")
    added = None if redis_p99 is None or full_p99 is None else (redis_p99 - full_p99) * 1000
    added50 = None if redis_p50 is None or full_p50 is None else (redis_p50 - full_p50) * 1000
    cost = None if redis_cpu is None or full_cpu is None else redis_cpu - full_cpu
    row("Redis store: added p99 at the fixed rate < 50 µs over the local store",
        f"{fmt(added, 0)} µs (p50 {fmt(added50, 0)} µs; CPU {fmt(cost, 1)} µs per request more)"
        if added is not None else "—",
        None if added is None else added < 50)
    idle = mb((configs.get("simgate-full") or {}).get("idle_kb"))
    row("idle RSS < 20 MB (simgate full stack)", f"{fmt(idle, 1)} MB" if idle else "—",
        None if not idle else idle < 20)
    return rows


def short(name):
    return {
        "simgate-full": "simgate full",
        "simgate-full-always": "simgate full (always)",
        "simgate-full-nocache": "simgate full (no token cache)",
        "simgate-full-log": "simgate full (access log)",
        "simgate-full-redis": "simgate full (Redis store)",
        "simgate-pass-ws": "simgate passthrough (work-stealing)",
        "simgate-pass-base": "simgate passthrough (baseline)",
        "simgate-full-base": "simgate full (baseline)",
        "minimal": "minimal hyper proxy",
        "simgate-pass": "simgate passthrough",
        "haproxy": "HAProxy",
    }.get(name, name)


def pct(x):
    return None if x is None else x * 100


def mb(kb):
    return None if not kb else kb / 1024


if __name__ == "__main__":
    main()
