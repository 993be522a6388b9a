#!/usr/bin/env python3
"""Turns bench/run.sh's raw JSON lines into a markdown report.

Medians over repetitions; ratios are medians of per-repetition ratios
(each repetition ran every server back to back, so pairing them cancels
most of a noisy machine's drift).
"""
import argparse
import json
import statistics
from collections import defaultdict

PEERS = ["tokio-tungstenite", "fastwebsockets", "tokio-websockets"]
BASE = "tokio-tungstenite"
RAW = "raw"


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def fmt(x, spec=",.0f"):
    return "-" if x is None else format(x, spec)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("raw")
    ap.add_argument("--title", default="Echo benchmark")
    a = ap.parse_args()

    runs = defaultdict(lambda: defaultdict(dict))  # scenario -> rep -> server -> r
    idle = {}
    order = []
    for line in open(a.raw):
        line = line.strip()
        if not line:
            continue
        d = json.loads(line)
        if d["scenario"] == "idle":
            idle[d["server"]] = d["r"]
            continue
        if d["scenario"] not in order:
            order.append(d["scenario"])
        runs[d["scenario"]][d["rep"]][d["server"]] = d["r"]

    out = [f"# {a.title}", ""]
    out.append(
        "Servers pinned to CPU 0, ws-load to CPU 1. Rate = echoed messages "
        "(or completed handshakes) per second; MB/s = echoed payload bytes "
        "per second, one direction; latency = send to echo (closed loop: "
        "round trip; pipelined: includes queueing behind the in-flight "
        "window); server us/op = server utime+stime during the window / ops; "
        "client % = ws-load's CPU use (near 100% means the load generator, "
        "not the server, was the limit). Ratios are rate ratios (higher is "
        "better for the row's server), medians of per-repetition ratios."
    )
    out.append("")
    for sc in order:
        reps = runs[sc]
        servers = []
        for rep in sorted(reps):
            for s in reps[rep]:
                if s not in servers:
                    servers.append(s)
        hs = any(r.get("mode") == "handshakes" for rep in reps.values() for r in rep.values())
        unit = "hs/s" if hs else "msg/s"
        out.append(f"## {sc}  ({len(reps)} rep{'s' if len(reps) != 1 else ''})")
        out.append("")
        cols = [
            "server", unit, "MB/s", "p50 us", "p99 us", "p999 us", "server us/op",
            "client %", "vs tungstenite", "vs best peer", "vs raw", "cpu/op vs raw", "errors",
        ]
        out.append("| " + " | ".join(cols) + " |")
        out.append("|" + "---|" * len(cols))
        for s in servers:
            rs = [reps[rep][s] for rep in sorted(reps) if s in reps[rep]]

            def ratio(other_fn, key="rate", invert=False):
                vals = []
                for rep in sorted(reps):
                    if s not in reps[rep]:
                        continue
                    o = other_fn(reps[rep])
                    mine = reps[rep][s].get(key)
                    if o is None or not mine or not o:
                        continue
                    vals.append(o / mine if invert else mine / o)
                return med(vals)

            def base(rep):
                r = rep.get(BASE)
                return r["rate"] if r else None

            def best(rep):
                v = [rep[p]["rate"] for p in PEERS if p in rep]
                return max(v) if v else None

            def raw(rep):
                r = rep.get(RAW)
                return r["rate"] if r else None

            def raw_cpu(rep):
                r = rep.get(RAW)
                return r["server_cpu_us_per_op"] if r else None

            client = med(
                [100 * r["client_cpu_s"] / r["window_s"] for r in rs if r.get("client_cpu_s") is not None]
            )
            cpu_ratio = ratio(raw_cpu, key="server_cpu_us_per_op")
            row = [
                f"**{s}**" if s.startswith("ws-") else s,
                fmt(med([r["rate"] for r in rs])),
                fmt(med([r["mb_per_s"] for r in rs]), ",.1f"),
                fmt(med([r["p50_us"] for r in rs]), ",.1f"),
                fmt(med([r["p99_us"] for r in rs]), ",.1f"),
                fmt(med([r["p999_us"] for r in rs]), ",.1f"),
                fmt(med([r["server_cpu_us_per_op"] for r in rs]), ".2f"),
                fmt(client, ".0f"),
                fmt(ratio(base), ".2f"),
                fmt(ratio(best), ".2f"),
                fmt(ratio(raw), ".2f"),
                fmt(cpu_ratio, ".2f"),
                str(sum(r["errors"] for r in rs)),
            ]
            out.append("| " + " | ".join(row) + " |")
        out.append("")

    if idle:
        out.append("## Idle memory")
        out.append("")
        out.append(
            "Server VmRSS before any connection, with N idle (upgraded) "
            "connections open, and after a burst (one large binary message "
            "echoed on some connections) once they are idle again. "
            "Per-connection figures divide the RSS growth by N. After-burst "
            "RSS includes memory the allocator keeps rather than returns."
        )
        out.append("")
        cols = [
            "server", "N", "RSS empty MiB", "RSS idle MiB", "KiB/conn idle",
            "RSS after burst MiB", "KiB/conn after burst", "idle vs tungstenite",
        ]
        out.append("| " + " | ".join(cols) + " |")
        out.append("|" + "---|" * len(cols))

        def per_conn(r, k):
            n = r.get("connections") or 0
            if not n or r.get(k) is None or r.get("rss0_kib") is None:
                return None
            return (r[k] - r["rss0_kib"]) / n

        base_idle = per_conn(idle[BASE], "rss_idle_kib") if BASE in idle else None
        for s, r in idle.items():
            pc = per_conn(r, "rss_idle_kib")
            mib = lambda k: None if r.get(k) is None else r[k] / 1024
            row = [
                f"**{s}**" if s.startswith("ws-") else s,
                str(r.get("connections")),
                fmt(mib("rss0_kib"), ".1f"),
                fmt(mib("rss_idle_kib"), ".1f"),
                fmt(pc, ".2f"),
                fmt(mib("rss_after_burst_kib"), ".1f"),
                fmt(per_conn(r, "rss_after_burst_kib"), ".2f"),
                fmt(pc / base_idle if pc and base_idle else None, ".2f"),
            ]
            out.append("| " + " | ".join(row) + " |")
        out.append("")
        some = next(iter(idle.values()))
        out.append(
            f"Burst: {some.get('burst_size')} B on {some.get('burst_conns')} connections."
        )
        out.append("")
    print("\n".join(out))


if __name__ == "__main__":
    main()
