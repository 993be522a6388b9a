#!/usr/bin/env python3
"""Turns bench/run.sh's raw JSON lines into a markdown report.

Medians over repetitions; ratios are medians of per-repetition ratios
(each repetition ran every server back to back, so pairing them cancels
most of a noisy machine's drift).

With --fanout, turns bench/fanout.sh's raw JSON lines (ws-load --fanout)
into the chat fan-out report instead.
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


def per_rep(xs, spec=",.0f"):
    """One value if every repetition agrees, else all of them, in order."""
    xs = [x for x in xs if x is not None]
    if not xs:
        return "-"
    if all(x == xs[0] for x in xs):
        return fmt(xs[0], spec)
    return " / ".join(fmt(x, spec) for x in xs)


def fanout(a):
    runs = defaultdict(lambda: defaultdict(dict))  # scenario -> server -> rep -> record
    order = []
    for line in open(a.raw):
        line = line.strip()
        if not line:
            continue
        d = json.loads(line)
        if d["scenario"] not in order:
            order.append(d["scenario"])
        runs[d["scenario"]][d["server"]][d["rep"]] = d

    rooms = any(
        (rec["r"].get("rooms") or 0) > 0
        for srv in runs.values()
        for reps in srv.values()
        for rec in reps.values()
    )
    out = [f"# {a.title}", ""]
    if a.note:
        out += [a.note, ""]
    out.append(
        "`ws-server --mode chat --threads 1` pinned to CPU 0, `ws-load --fanout` "
        "pinned to CPU 1. N clients connect; once all are upgraded (plus 200 ms), "
        "each sends M numbered messages as fast as the server takes them while "
        "reading; the server broadcasts each to all N (sender included), so a "
        "complete run is N x N x M deliveries. Deliveries/s and sent msg/s are "
        "over the time from the start to the last delivery; sent = messages "
        "written to the sockets (complete run: N x M, so sent msg/s is the "
        "broadcast rate; loopback buffers take megabytes, so in a run the "
        "server cut short it includes messages the server never read). Missing = N x N x M "
        "minus deliveries; order = deliveries whose sequence number was not the "
        "next expected from their sender (gap, duplicate, reordering); closed = "
        "clients closed by the server (close code x count); server ns/delivery = "
        "server utime+stime over the run / deliveries (us/msg: / messages sent); "
        "client % = ws-load's CPU use over the run (near 100%: the load generator "
        "was the limit); peak RSS = the server's VmHWM. End: done (every client "
        "finished, or was closed), stalled (no delivery for 3 s), time-limit. "
        "Rates and CPU are medians over repetitions; where repetitions differ, "
        "counts are listed per repetition. ~: the run took under 0.5 s, and "
        "/proc CPU times have 10 ms resolution, so the CPU figures are rough."
    )
    if rooms:
        out += [
            "",
            "Rooms (`ws-load --rooms R`): client i connects to `/ws?room=r{i % R}`, "
            "so a message reaches only the clients of its sender's room (sender "
            "included) and a complete run is the sum over rooms of (room size)² x M "
            "deliveries; without rooms every client is in the lobby, as above. "
            "Foreign = well-formed messages a client got from a sender of another "
            "room (not counted as deliveries; a correct server has 0).",
        ]
    out.append("")
    for sc in order:
        servers = runs[sc]
        first = next(iter(next(iter(servers.values())).values()))["r"]
        nreps = max(len(v) for v in servers.values())
        r_rooms = first.get("rooms") or 0
        if r_rooms:
            lo, hi = first.get("room_size_min"), first.get("room_size_max")
            size = f"{lo}" if lo == hi else f"{lo}-{hi}"
            where = f" in {r_rooms} room{'s' if r_rooms != 1 else ''} of {size}"
        else:
            where = f" (no room: all {first['connections']} together)" if rooms else ""
        out.append(
            f"## {sc}: N={first['connections']}{where}, M={first['messages']:,}, "
            f"{first['size']} B {'text' if first['text'] else 'binary'}, "
            f"expected {first['expected']:,} deliveries  "
            f"({nreps} rep{'s' if nreps != 1 else ''})"
        )
        out.append("")
        cols = [
            "server", "deliveries/s", "sent msg/s", "elapsed s", "delivered", "missing",
            "order", *(["foreign"] if rooms else []), "closed", "server ns/delivery", "server us/msg", "client %",
            "peak RSS MiB", "end",
        ]
        out.append("| " + " | ".join(cols) + " |")
        out.append("|" + "---|" * len(cols))
        for s, reps in servers.items():
            ds = [reps[k] for k in sorted(reps)]
            rs = [d["r"] for d in ds]
            closed = [
                ", ".join(f"{c} x{k}" for c, k in r["closed"].items()) or "0" for r in rs
            ]
            client = [
                100 * r["client_cpu_s"] / r["window_s"]
                for r in rs
                if r.get("client_cpu_s") is not None and r.get("window_s")
            ]
            hwm = [d["server_hwm_kib"] / 1024 for d in ds if d.get("server_hwm_kib")]
            # /proc CPU times tick every 10 ms: over a short run they are rough.
            short = "~" if med([r["window_s"] for r in rs]) < 0.5 else ""
            row = [
                f"**{s}**",
                fmt(med([r["rate"] for r in rs])),
                fmt(med([r["sent_rate"] for r in rs])),
                fmt(med([r["elapsed_s"] for r in rs]), ".2f"),
                per_rep([r["deliveries"] for r in rs]),
                per_rep([r["missing"] for r in rs]),
                per_rep([r["order_violations"] for r in rs]),
                *([per_rep([r.get("foreign", 0) for r in rs])] if rooms else []),
                closed[0] if len(set(closed)) == 1 else " / ".join(closed),
                short + fmt(med([r["server_cpu_ns_per_delivery"] for r in rs]), ",.0f"),
                short + fmt(med([r["server_cpu_us_per_msg"] for r in rs]), ".2f"),
                fmt(med(client), ".0f"),
                fmt(med(hwm), ".1f"),
                per_rep([r["end"] for r in rs], "s"),
            ]
            out.append("| " + " | ".join(row) + " |")
        out.append("")
    for pair in filter(None, a.ratio.split(",")):
        out += fanout_ratio(runs, *pair.split("/", 1))
    print("\n".join(out))


def fanout_ratio(runs, sa, sb):
    """Scenario sa next to sb per runtime: medians, and medians of the
    per-repetition ratios (the two ran back to back in each repetition)."""
    if sa not in runs or sb not in runs:
        return [f"(no ratio: scenario {sa} or {sb} missing)", ""]
    out = [
        f"## {sa} vs {sb}",
        "",
        f"Ratios are medians of per-repetition ratios ({sa} / {sb}, same runtime, "
        "run back to back). Deliveries/s above 1: the first is faster; "
        "ns/delivery above 1: the first costs the server more CPU per delivery.",
        "",
        f"| server | {sa} deliveries/s | {sb} deliveries/s | ratio | "
        f"{sa} ns/delivery | {sb} ns/delivery | ratio | lost/dup/reordered/foreign |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for s in runs[sa]:
        ra, rb = runs[sa][s], runs[sb].get(s, {})
        reps = sorted(set(ra) & set(rb))
        pa = [ra[k]["r"] for k in reps]
        pb = [rb[k]["r"] for k in reps]

        def ratio(key):
            xs = [
                x[key] / y[key]
                for x, y in zip(pa, pb)
                if x.get(key) is not None and y.get(key)
            ]
            return med(xs)

        bad = sum(
            r["missing"] + r["order_violations"] + r.get("foreign", 0) + r["bad"]
            for r in pa + pb
        )
        out.append(
            "| " + " | ".join([
                f"**{s}**",
                fmt(med([r["rate"] for r in pa])),
                fmt(med([r["rate"] for r in pb])),
                fmt(ratio("rate"), ".2f"),
                fmt(med([r["server_cpu_ns_per_delivery"] for r in pa])),
                fmt(med([r["server_cpu_ns_per_delivery"] for r in pb])),
                fmt(ratio("server_cpu_ns_per_delivery"), ".2f"),
                f"{bad:,} in {len(reps)} paired rep{'s' if len(reps) != 1 else ''}",
            ]) + " |"
        )
    out.append("")
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("raw")
    ap.add_argument("--title", default="Echo benchmark")
    ap.add_argument("--fanout", action="store_true", help="raw lines are from fanout.sh")
    ap.add_argument("--note", default="", help="a line under the title (--fanout)")
    ap.add_argument("--ratio", default="", help="A/B[,C/D...]: scenario A next to B per runtime (--fanout)")
    a = ap.parse_args()
    if a.fanout:
        fanout(a)
        return

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
