"""The serving benchmark's table: one row per case and system, the figure, the reference measured in
the same run with the ratio, the floor we aim for and PASS/MISS. Nothing here asserts: it reports.
"""

from __future__ import annotations

from typing import Any

Row = dict[str, str]
COLUMNS = ("case", "system", "figure", "against the same run's reference", "aim", "")


def row(case: str, system: str, figure: str, versus: str = "", aim: str = "", ok: bool | None = None) -> Row:
    verdict = "" if ok is None else ("PASS" if ok else "MISS")
    return {
        "case": case,
        "system": system,
        "figure": figure,
        "versus": versus,
        "aim": aim,
        "verdict": verdict,
    }


def rate(x: float) -> str:
    return f"{x:,.0f}"


def p(lat: dict[str, float], *keys: str) -> str:
    return " / ".join(f"{lat[k]:.2f}" for k in keys) + " ms" if lat else "no answers"


def fivexx(status: dict[str, int]) -> int:
    return sum(n for code, n in status.items() if code.startswith("5"))


def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if b else "n/a"


def single(o: dict[str, Any], peers: dict[str, Any]) -> list[Row]:
    on, off, mosec, naive, raw = o["single_on"], o["single_off"], peers["mosec"], peers["naive"], peers["raw"]

    def fig(r: dict[str, Any]) -> str:
        bad = f", {r['non_2xx']} non-2xx" if r["non_2xx"] else ""
        return f"{rate(r['rate'])} req/s, p50/p99 {p(r['latency_ms'], 'p50', 'p99')}{bad}"

    ok = (
        on["rate"] >= 1.5 * mosec["rate"]
        and on["rate"] >= 5 * naive["rate"]
        and on["latency_ms"]["p99"] <= 10
    )
    case = "1 single user, 32 conn"
    return [
        row(case, "ours", fig(on), f"ours/Mosec {ratio(on['rate'], mosec['rate'])}, ours/naive "
            f"{ratio(on['rate'], naive['rate'])}", ">=1.5x Mosec, >=5x naive, p99<=10 ms", ok),
        row(case, "ours, fast off", fig(off), f"fast off/on {ratio(off['rate'], on['rate'])}"),
        row(case, "Mosec", fig(mosec)),
        row(case, "naive FastAPI", fig(naive)),
        row(case, "raw ASGI", fig(raw), f"ours/raw {ratio(on['rate'], raw['rate'])} (the HTTP ceiling)"),
    ]  # fmt: skip


def open_loop(o: dict[str, Any], peers: dict[str, Any]) -> list[Row]:
    rows = []
    for share in ("50%", "80%"):
        for system, runs in (("ours", o["open"]), ("Mosec", peers["mosec_open"])):
            r = runs[share]
            lat = p(r["latency_ms"], "p50", "p90", "p99", "p99.9", "max")
            fig = f"{rate(r['offered_rate'])}/s offered, {rate(r['rate'])}/s done; p50/90/99/99.9/max {lat}"
            versus = ""
            if system == "ours":
                theirs = peers["mosec_open"][share]["latency_ms"].get("p99", 0)
                versus = (
                    f"p99 ours/Mosec {ratio(r['latency_ms'].get('p99', 0), theirs)} (each at its own {share})"
                )
            rows.append(row(f"2 open loop {share} of peak", system, fig, versus))
    return rows


def many(o: dict[str, Any], peers: dict[str, Any]) -> list[Row]:
    plain, explain, naive = o["score256"], o["score256_explain"], peers["naive256"]

    def fig(r: dict[str, Any]) -> str:
        bad = f", {r['non_2xx']} non-2xx" if r.get("non_2xx") else ""
        return f"{rate(r['rate'] * 256)} users/s, p99 {r['latency_ms']['p99']:.2f} ms{bad}"

    ok = plain["rate"] * 256 >= 400_000 and plain["latency_ms"]["p99"] <= 20 and not plain["non_2xx"]
    case = "3 256 users, 32 conn"
    return [
        row(case, "ours", fig(plain), f"ours/naive {ratio(plain['rate'], naive['rate'])}",
            ">=400,000 users/s, p99<=20 ms", ok),
        row(case, "ours, explain", fig(explain), f"explain/plain {ratio(explain['rate'], plain['rate'])}"),
        row(case, "naive FastAPI", fig(naive)),
    ]  # fmt: skip


def events(o: dict[str, Any], ceiling: dict[str, float]) -> list[Row]:
    r = o["events"]
    fig = f"{rate(r['events_per_s'])} events/s, p99 {r['latency_ms']['p99']:.2f} ms"
    if "cpu_share" in r:  # which of the two is the bottleneck: the one near a whole core
        fig += ", CPU used: server {server:.2f}, redis-server {redis:.2f} of a core".format(**r["cpu_share"])
    if r["non_2xx"]:
        fig += f", {r['non_2xx']} non-2xx"
    set_rate = ceiling.get("SET -P 1", 0)
    versus = f"events/s / redis-benchmark SET/s {ratio(r['events_per_s'], set_rate)}" if set_rate else ""
    ok = r["events_per_s"] >= 50_000 and r["latency_ms"]["p99"] <= 20 and not r["non_2xx"]
    return [row("4 POST /events x100", "ours", fig, versus, ">=50,000 events/s, p99<=20 ms", ok)]


def overload(o: dict[str, Any]) -> list[Row]:
    r, crowd, peak = (
        o["overload"]["score256_4x"],
        o["overload"]["single_256_connections"],
        o["score256"]["rate"],
    )
    share = r["ok_rate"] / peak if peak else 0
    admitted = r["latency_ok_ms"].get("p99", float("inf"))
    fig = (
        f"{rate(r['offered_rate'])}/s offered, 2xx {rate(r['ok_rate'])}/s; 5xx {fivexx(r['status'])}, "
        f"429 {r['status'].get('429', 0)}, admitted p99 {admitted:.1f} ms"
    )
    ok = share >= 0.9 and fivexx(r["status"]) == 0 and admitted <= 50
    crowd_fig = "status " + ", ".join(f"{k}: {v:,}" for k, v in crowd["status"].items())
    return [
        row("5 overload 4x, 256 users", "ours", fig, f"2xx = {share:.0%} of case-3 peak",
            ">=90% of peak, 0 5xx, p99<=50 ms", ok),
        row("5 256 conn, single user", "ours", crowd_fig, f"{rate(crowd['rate'])} req/s", "0 5xx",
            fivexx(crowd["status"]) == 0),
    ]  # fmt: skip


def busy(o: dict[str, Any]) -> list[Row]:
    b = o["busy"]
    inside, applies = b["redis"], b["applies"]
    per_call = inside["busy_call_ms"]
    per_apply = inside["busy_total_ms"] / applies["count"] if applies["count"] else float("inf")
    lat = {k: v["latency_ms"].get("p99", float("inf")) for k, v in b["bystanders"].items()}
    fig = (
        f"in Redis {per_apply:.1f} ms/apply ({applies['count']} applies, {inside['busy_calls']} calls, "
        f"median {per_call.get('median', 0):.1f} max {per_call.get('max', 0):.1f} ms/call)"
    )
    if set(applies["status"]) != {"200"}:
        fig += f", apply status {applies['status']}"
    bystanders = f"bystander p99 /events {lat['events']:.1f} ms, /score {lat['score']:.1f} ms"
    ok = per_apply <= 5 and max(lat.values()) < 20
    return [
        row("6 busy user, 1,000/apply", "ours", fig, bystanders, "<=5 ms/apply, bystander p99 <20 ms", ok)
    ]


def ready(o: dict[str, Any], peers: dict[str, Any]) -> list[Row]:
    times = o["ready"]
    fig = f"{max(times):.2f} s slowest of {len(times)} starts (first {times[0]:.2f} s)"
    others = (("Mosec", "mosec_ready"), ("naive", "naive_ready"), ("raw ASGI", "raw_ready"))
    versus = ", ".join(f"{name} {peers[key]:.2f} s" for name, key in others)
    return [row("7 start to ready", "ours", fig, versus, "<=3 s", max(times) <= 3)]


def ceilings(peers: dict[str, Any], ceiling: dict[str, float]) -> list[Row]:
    g, wrk_raw = peers["generator"], peers.get("raw_phase", peers["raw"])["rate"]
    most = g["closed_loop"]
    ladder = ", ".join(
        f"{rate(r['offered_rate'])}/s lag p99 {r['generator_lag_ms'].get('p99', 0):.2f} ms"
        for r in g["open_loop"]
    )
    fig = f"{rate(most['rate'])} req/s closed loop on raw ASGI; open loop {ladder}"
    versus = f"loadgen/wrk {ratio(most['rate'], wrk_raw)}; keeps up to {rate(g['keeps_up_to'])}/s"
    rows = [row("ceiling: load generator", "bench.loadgen", fig, versus)]
    if ceiling:
        fig = ", ".join(f"{k} {rate(v)}/s" for k, v in ceiling.items())
        rows.append(row("ceiling: Redis", "redis-benchmark", fig, "same redis-server, 32 connections"))
    return rows


def rows(results: dict[str, Any]) -> list[Row]:
    o, peers, ceiling = results["ours"], results["peers"], results["redis_benchmark"]
    return [
        *single(o, peers),
        *open_loop(o, peers),
        *many(o, peers),
        *events(o, ceiling),
        *overload(o),
        *busy(o),
        *ready(o, peers),
        *ceilings(peers, ceiling),
    ]


def render(table: list[Row]) -> str:
    cells = [list(COLUMNS)] + [
        [r["case"], r["system"], r["figure"], r["versus"], r["aim"], r["verdict"]] for r in table
    ]
    widths = [max(len(c[i]) for c in cells) for i in range(len(COLUMNS))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(cell, widths, strict=True)).rstrip() for cell in cells]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)


def notes(results: dict[str, Any]) -> list[str]:
    limit = results["peers"]["generator"]["keeps_up_to"]
    highest = max(r["offered_rate"] for r in open_runs(results["ours"]))
    lines = [
        f"bench.loadgen's own limit on one core: it keeps its schedule up to {limit:,.0f} requests/s "
        f"(highest open-loop rate offered to a service here: {highest:,.0f}/s). Open-loop latencies count "
        "from each request's intended send time.",
        "Servers on core 0; wrk, bench.loadgen and redis-server on core 1; redis-benchmark on core 0.",
        "Case 1 is the median of 3 alternating rounds with every system up at once (each round: ours, "
        "ours with fast routes off, Mosec, naive, raw ASGI); each phase's own figure is in the JSON.",
        "Load average (1/5/15 min) before / after: {} / {}; CPU time stolen by the hypervisor during "
        "the run: {:.1%}".format(
            *results["machine"]["loadavg_before_after"], results["machine"].get("steal_share", 0.0)
        ),
    ]
    if highest > limit:
        lines.append(
            "WARNING: an open-loop rate above the generator's limit: those latencies include its lag."
        )
    return lines


def open_runs(o: dict[str, Any]) -> list[dict[str, Any]]:
    return [*o["open"].values(), o["overload"]["score256_4x"]]
