"""The benchmark report: every benchmark in one run, written as REPORT.md plus PNG plots.

    make bench                                                # = python benchmarks/report.py
    .venv/bin/python benchmarks/report.py --quick --out /tmp/r  # well under 2 minutes, rough figures

The figures come from the benchmark scripts' own functions (append.main, resume.measure,
sse.measure, bridge.measure_throughput), so a script run alone and the report measure the same
thing. Every figure sits next to baselines measured in the same run on the same machine; the
report states the machine, the versions and the durability settings, and marks each of issue 10's
targets met or missed with the measured ratio. ``--quick`` only proves the report and plots are
produced (fewer and shorter configurations; targets whose configuration it skips say so).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.metadata
import os
import platform
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import matplotlib  # noqa: E402

matplotlib.use("Agg")  # no display: files only
import matplotlib.pyplot as plt  # noqa: E402

import append  # noqa: E402
import bridge  # noqa: E402
import durable_streams  # noqa: E402
import postgres  # noqa: E402
import redis_server  # noqa: E402
import resume  # noqa: E402
import sse  # noqa: E402


@dataclass(frozen=True)
class Plan:
    """What one report run measures: the quick form or the full form."""

    quick: bool
    append_argv: list[str]
    resume_sizes: list[int]
    sse_argv: list[str]
    bridge_events: int
    bridge_trials: int
    postgres_argv: list[str]
    durable_argv: list[str]


def plan(quick: bool, huge: bool) -> Plan:
    if quick:
        return Plan(
            quick=True,
            append_argv=["--seconds", "0.5", "--warmup", "0.1", "--producers", "1", "10", "--rounds", "1",
                         "--events", "300", "--cross-events", "200", "--idle", "0.5"],
            resume_sizes=[1_000, 10_000],
            sse_argv=["--seconds", "0.5", "--subscribers", "1,10", "--idle-streams", "10"],
            bridge_events=50,
            bridge_trials=1,
            postgres_argv=["--quick", "--producers", "1", "10"],
            durable_argv=["--quick"],
        )
    return Plan(
        quick=False,
        append_argv=["--producers", "1", "10", "100", "1000"],
        resume_sizes=[10_000, 100_000, 1_000_000] + ([10_000_000] if huge else []),
        sse_argv=["--subscribers", "1,10,100,1000"],
        bridge_events=1000,
        bridge_trials=3,
        postgres_argv=["--producers", "1", "10", "100"],
        durable_argv=[],
    )


# --- the measurements --------------------------------------------------------------------------


@dataclass
class Measured:
    append: append.Results
    append_args: argparse.Namespace
    resume: list[resume.ResumeResult]
    sse: dict[str, sse.ServerResult]
    sse_args: argparse.Namespace
    sse_workers: sse.ServerResult
    """eventlog served with ``--workers 2`` (latency only: the same subscriber counts)."""
    bridge: dict[str, tuple[float, float]]
    postgres: postgres.Results | str
    '''The PostgreSQL figures, or why they were not measured.'''
    durable: durable_streams.Results | str
    '''The Durable Streams figures, or why they were not measured.'''
    seconds: dict[str, float] = field(default_factory=dict)
    load: tuple[float, float] = (0.0, 0.0)


def timed(label: str, seconds: dict[str, float], measure: Callable[[], Any]) -> Any:
    print(f"[report] {label} ...", file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    result = measure()
    seconds[label] = time.perf_counter() - t0
    return result


async def bridge_throughput(events: int, trials: int) -> dict[str, tuple[float, float]]:
    bridges = bridge.Bridges(None)
    try:
        return await bridge.measure_throughput(bridges, 100, events, trials)
    finally:
        bridges.cleanup()


def measure_all(p: Plan) -> Measured:
    seconds: dict[str, float] = {}
    load0 = os.getloadavg()[0]
    append_args = append.parse_args(p.append_argv)
    sse_args = sse.parse_args(p.sse_argv)
    appended = timed("append throughput and wake-up", seconds, lambda: asyncio.run(append.main(append_args)))
    resumed = timed("resume latency", seconds, lambda: asyncio.run(resume.measure(p.resume_sizes)))
    streamed = timed("SSE fan-out and memory", seconds, lambda: sse.run(sse.measure(sse_args)))
    workers_args = sse.parse_args([*p.sse_argv, "--servers", "eventlog", "--eventlog-workers", "2", "--idle-streams", "0"])
    workers = timed("SSE fan-out, 2 workers", seconds, lambda: sse.run(sse.measure(workers_args)))["eventlog"]
    bridged = timed("bridge publish", seconds, lambda: asyncio.run(bridge_throughput(p.bridge_events, p.bridge_trials)))
    on_postgres = timed("PostgreSQL next to SQLite", seconds, lambda: measure_postgres(p.postgres_argv))
    durable = timed("Durable Streams vs the reference server", seconds, lambda: measure_durable(p.durable_argv))
    return Measured(appended, append_args, resumed, streamed, sse_args, workers, bridged, on_postgres, durable, seconds,
                    (load0, os.getloadavg()[0]))


def measure_postgres(argv: list[str]) -> postgres.Results | str:
    '''The PostgreSQL section's figures; on a machine without PostgreSQL the reason instead (the
    rest of the report does not need it).'''
    try:
        return asyncio.run(postgres.measure(postgres.parse_args(argv)))
    except postgres.PostgresMissing as exc:
        return f"not measured: {exc}"


def measure_durable(argv: list[str]) -> durable_streams.Results | str:
    '''The Durable Streams section's figures; without node or the reference server's install the
    reason instead (the report never installs it: `make bench` does, where npm is).'''
    try:
        return asyncio.run(durable_streams.measure(durable_streams.parse_args(argv)))
    except durable_streams.ReferenceMissing as exc:
        return f"not measured: {exc}"


# --- machine and versions ----------------------------------------------------------------------


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def memory_total() -> str:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return f"{int(line.split()[1]) / 1024 ** 2:.1f} GiB"
    except OSError:
        pass
    return "unknown"


def version_of(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def postgres_version() -> str:
    bin_dir = postgres.find_bin()
    if bin_dir is None:
        return "not installed"
    return subprocess.run([str(Path(bin_dir) / "postgres"), "--version"], capture_output=True, text=True).stdout.strip()


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "-C", str(HERE), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5)
        return out.stdout.strip() or "unknown"
    except OSError:
        return "unknown"


def environment(m: Measured) -> list[tuple[str, str]]:
    return [
        ("CPU", f"{cpu_model()}, {os.cpu_count()} logical cores ({platform.machine()})"),
        ("memory", memory_total()),
        ("kernel", f"{platform.system()} {platform.release()}"),
        ("load average", f"{m.load[0]:.2f} at start, {m.load[1]:.2f} at end (a shared machine: compare ratios)"),
        ("Python", platform.python_version()),
        ("SQLite", sqlite3.sqlite_version),
        ("eventlog", f"{version_of('eventlog')} (commit {git_commit()})"),
        ("redis-server", redis_server.version()),
        ("redis-py", version_of("redis")),
        ("PostgreSQL / asyncpg", f"{postgres_version()} / {version_of('asyncpg')}"),
        ("aiosqlite / uvicorn / starlette", f"{version_of('aiosqlite')} / {version_of('uvicorn')} / {version_of('starlette')}"),
    ]


DURABILITY = [
    ("eventlog", "durability=\"process\" (its default): WAL, synchronous=NORMAL; an append returns once committed, "
                 "so it survives kill -9 of the process (not a power loss)"),
    ("sqlite3 executemany, aiosqlite", "the same file settings and schema (WAL, synchronous=NORMAL)"),
    ("Redis Streams", f"redis-server {redis_server.DURABILITY}: an XADD's reply follows its write to the AOF, so it "
                      "survives a crash of redis-server; up to a second is lost on a power loss"),
    ("in-memory bounded log / broadcast / bridge", "nothing durable (the floor)"),
]


# --- formatting --------------------------------------------------------------------------------


def us(seconds: float) -> str:
    return f"{seconds * 1e6:,.0f} us" if seconds < 0.01 else f"{seconds * 1e3:,.1f} ms"


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class Target:
    measure: str
    value: str
    target: str
    met: bool | None  # None: not measured in this form


def verdict(t: Target) -> str:
    return "not measured (--quick)" if t.met is None else ("**met**" if t.met else "**missed**")


def targets(m: Measured) -> list[Target]:
    rate = {k: v.per_second for k, v in m.append.rates.items()}
    cpu = {k: v.cpu_per_row for k, v in m.append.rates.items()}
    ev, base = m.sse["eventlog"], m.sse["baseline"]
    out: list[Target] = []

    def add(measure: str, target: str, have: bool, value: Callable[[], tuple[str, bool]]) -> None:
        if have:
            text, met = value()
            out.append(Target(measure, text, target, met))
        else:
            out.append(Target(measure, "-", target, None))

    ex = rate["executemany"]
    add("100 concurrent producers / sqlite3 executemany x100", ">= 0.7x", "eventlog@100" in rate, lambda: (
        f"{rate['eventlog@100'] / ex:.2f}x ({rate['eventlog@100']:,.0f} vs {ex:,.0f} rows/s)", rate["eventlog@100"] / ex >= 0.7))
    add("CPU/row, 100 producers / executemany's", "<= 2x", "eventlog@100" in cpu, lambda: (
        f"{cpu['eventlog@100'] / cpu['executemany']:.1f}x ({cpu['eventlog@100'] * 1e6:.0f} vs {cpu['executemany'] * 1e6:.0f} us/row)",
        cpu["eventlog@100"] / cpu["executemany"] <= 2))
    add("1 producer awaiting each append / aiosqlite execute+commit per event", ">= 2x", "eventlog@1" in rate, lambda: (
        f"{rate['eventlog@1'] / rate['aiosqlite']:.2f}x ({rate['eventlog@1']:,.0f} vs {rate['aiosqlite']:,.0f}/s)",
        rate["eventlog@1"] / rate["aiosqlite"] >= 2))
    redis_ns = [n for n in m.append_args.producers if f"redis@{n}" in rate]
    add("eventlog durable append / Redis XADD, at every concurrency", ">= 1x at each", bool(redis_ns), lambda: (
        ", ".join(f"{n}: {rate[f'eventlog@{n}'] / rate[f'redis@{n}']:.2f}x" for n in redis_ns),
        all(rate[f"eventlog@{n}"] >= rate[f"redis@{n}"] for n in redis_ns)))
    stream_cpu, wall = m.append.cpu["stream"]
    events_per_s = m.append.latencies["cross-process"][2] / wall
    add(f"process CPU while subscribed to another process's run (~{events_per_s:.0f} events/s)", "<= 5% of a core", True, lambda: (
        f"{100 * stream_cpu / wall:.1f}%", stream_cpu / wall <= 0.05))
    for n, limit in ((100, 1.2), (1000, 1.0)):
        add(f"SSE, {n:,} subscribers, p99 vs the in-memory broadcast server", f"<= {limit}x", n in ev.configs and n in base.configs,
            lambda n=n, limit=limit: (
                f"{ev.configs[n].p99 * 1e3:.1f} vs {base.configs[n].p99 * 1e3:.1f} ms ({ev.configs[n].p99 / base.configs[n].p99:.2f}x)",
                ev.configs[n].p99 / base.configs[n].p99 <= limit))
    add("SSE, 1 subscriber, server CPU per chunk vs baseline", "<= 1.2x", 1 in ev.configs and 1 in base.configs, lambda: (
        f"{ev.configs[1].us_per_chunk:,.0f} vs {base.configs[1].us_per_chunk:,.0f} us ({ev.configs[1].us_per_chunk / base.configs[1].us_per_chunk:.2f}x)",
        ev.configs[1].us_per_chunk / base.configs[1].us_per_chunk <= 1.2))
    add("memory per idle SSE stream", "<= 20 KiB", True, lambda: (
        f"{ev.kib_per_stream:.1f} KiB (baseline {base.kib_per_stream:.1f}; {m.sse_args.idle_streams} streams)", ev.kib_per_stream <= 20))
    add("server RSS at idle (edge)", "< 50 MB", True, lambda: (
        f"{ev.rss_start_mib * 1.048576:.1f} MB (baseline {base.rss_start_mib * 1.048576:.1f})", ev.rss_start_mib * 1.048576 < 50))
    durable, memory = m.bridge["SQLite durable-ack"][0], m.bridge["in-memory"][0]
    add("durable bridge publish, 100 runs, vs in-memory bridge", ">= 30%", True, lambda: (
        f"{durable / memory:.0%} ({durable:,.0f} vs {memory:,.0f} events/s; write-behind {m.bridge['SQLite'][0] / memory:.0%})",
        durable / memory >= 0.30))
    low, high = min(m.resume, key=lambda r: r.p50), max(m.resume, key=lambda r: r.p50)
    add(f"resume latency, {m.resume[0].rows:,} .. {m.resume[-1].rows:,} rows (highest p50 / lowest)", "flat, <= 2x", True, lambda: (
        f"{high.p50 / low.p50:.2f}x ({us(low.p50)} at {low.rows:,} rows, {us(high.p50)} at {high.rows:,})", high.p50 / low.p50 <= 2))
    for key, name, limit in (("eventlog", "in-process", 0.001), ("cross-process", "cross-process", 0.010)):
        p99 = m.append.latencies[key][1]
        add(f"wake-up p99, {name}", f"< {us(limit)}", True, lambda p99=p99, limit=limit: (us(p99), p99 < limit))
    return out


# --- plots -------------------------------------------------------------------------------------


def save(fig: Any, out: Path, name: str) -> str:
    fig.tight_layout()
    fig.savefig(out / name, dpi=110)
    plt.close(fig)
    return name


def plot_append(m: Measured, out: Path) -> str:
    ns = m.append_args.producers
    rate = {k: v.per_second for k, v in m.append.rates.items()}
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for key, label, style in (("eventlog", "eventlog (durable)", "o-"), ("redis", "Redis XADD (AOF everysec)", "s-"),
                              ("memory", "in-memory bounded log", "^--")):
        points = [(n, rate[f"{key}@{n}"]) for n in ns if f"{key}@{n}" in rate]
        if points:
            ax.plot(*zip(*points), style, label=label)
    ax.axhline(rate["executemany"], color="grey", linestyle=":", label="sqlite3 executemany x100 (1 thread)")
    ax.axhline(rate["aiosqlite"], color="brown", linestyle="-.", label="aiosqlite commit per event (1 producer)")
    ax.set(xscale="log", yscale="log", xlabel="concurrent producers", ylabel="rows/s", title="Append throughput")
    ax.legend(fontsize=8)
    ax.grid(True, which="both", alpha=0.3)
    return save(fig, out, "append_throughput.png")


def plot_resume(m: Measured, out: Path) -> str:
    rows = [r.rows for r in m.resume]
    fig, ax = plt.subplots(figsize=(7, 4.2))
    ax.plot(rows, [r.p50 * 1e6 for r in m.resume], "o-", label="EventLog.read p50")
    ax.plot(rows, [r.p99 * 1e6 for r in m.resume], "o--", label="EventLog.read p99")
    ax.plot(rows, [r.raw_p50 * 1e6 for r in m.resume], "s-", color="grey", label="bare sqlite3 query p50")
    ax.plot(rows, [r.raw_p99 * 1e6 for r in m.resume], "s--", color="grey", label="bare sqlite3 query p99")
    ax.set(xscale="log", xlabel="rows in the log", ylabel="us", title=f"Resume: first page ({resume.PAGE} events) after a mid-run cursor")
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=8)
    ax.grid(True, which="both", alpha=0.3)
    return save(fig, out, "resume_latency.png")


def plot_sse(m: Measured, out: Path) -> str:
    fig, ax = plt.subplots(figsize=(7, 4.2))
    series = (
        (m.sse["eventlog"], "eventlog", "C0"),
        (m.sse_workers, "eventlog --workers 2", "C1"),
        (m.sse["baseline"], "in-memory broadcast", "grey"),
    )
    for result, label, color in series:
        configs = result.configs
        ns = sorted(configs)
        ax.plot(ns, [configs[n].p50 * 1e3 for n in ns], "o-", color=color, label=f"{label} p50")
        ax.plot(ns, [configs[n].p99 * 1e3 for n in ns], "o--", color=color, label=f"{label} p99")
    ax.set(xscale="log", yscale="log", xlabel="subscribers", ylabel="ms (POST start -> event received)",
           title=f"SSE end-to-end latency, {m.sse_args.rate:.0f} events/s")
    ax.legend(fontsize=8)
    ax.grid(True, which="both", alpha=0.3)
    return save(fig, out, "sse_latency.png")


def plot_wakeup(m: Measured, out: Path) -> str:
    lat = m.append.latencies
    keys = [("asyncio.Event", "asyncio.Event\n(floor)"), ("aiosqlite", "aiosqlite\ncommit+query"), ("eventlog", "eventlog\nin-process"),
            ("pipe", "pipe\n(cross floor)"), ("cross-process", "eventlog\ncross-process")]
    fig, ax = plt.subplots(figsize=(7, 4.2))
    xs = range(len(keys))
    ax.bar([x - 0.2 for x in xs], [lat[k][0] * 1e6 for k, _ in keys], 0.4, label="p50")
    ax.bar([x + 0.2 for x in xs], [lat[k][1] * 1e6 for k, _ in keys], 0.4, label="p99")
    ax.set_xticks(list(xs), [label for _, label in keys], fontsize=8)
    ax.set(yscale="log", ylabel="us", title="Wake-up latency: append start -> subscriber has the event")
    ax.legend(fontsize=8)
    ax.grid(True, axis="y", which="both", alpha=0.3)
    return save(fig, out, "wakeup_latency.png")


def plot_memory(m: Measured, out: Path) -> str:
    ev, base = m.sse["eventlog"], m.sse["baseline"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(7, 3.6))
    names = ["eventlog", "in-memory\nbroadcast"]
    left.bar(names, [ev.kib_per_stream, base.kib_per_stream], color=["C0", "grey"])
    left.axhline(20, color="red", linestyle=":", label="target 20 KiB")
    left.set(ylabel="KiB", title="RSS per idle stream")
    left.legend(fontsize=8)
    right.bar(names, [ev.rss_start_mib * 1.048576, base.rss_start_mib * 1.048576], color=["C0", "grey"])
    right.axhline(50, color="red", linestyle=":", label="target 50 MB")
    right.set(ylabel="MB", title="server RSS at idle")
    right.legend(fontsize=8)
    return save(fig, out, "memory.png")


def plot_postgres(r: postgres.Results, out: Path) -> str:
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.6))
    ns = list(r.throughput)
    x = range(len(ns))
    left.bar([i - 0.2 for i in x], [r.throughput[n][0] for n in ns], width=0.4, label="SQLite", color="C0")
    left.bar([i + 0.2 for i in x], [r.throughput[n][1] for n in ns], width=0.4, label="PostgreSQL", color="C2")
    left.set_xticks(list(x), [str(n) for n in ns])
    left.set(xlabel="producers", ylabel="appends/s", title="durable append throughput")
    left.legend(fontsize=8)
    labels, p50s, p99s = [], [], []
    for backend, (same, cross) in r.latency.items():
        short = backend.split(" ")[0]
        for name, samples in (("same", same), ("A->B", cross)):
            labels.append(f"{short}\n{name}")
            p50s.append(postgres.percentile(samples, 50) * 1e3)
            p99s.append(postgres.percentile(samples, 99) * 1e3)
    xs = range(len(labels))
    right.bar([i - 0.2 for i in xs], p50s, width=0.4, label="p50", color="C0")
    right.bar([i + 0.2 for i in xs], p99s, width=0.4, label="p99", color="C1")
    right.set_xticks(list(xs), labels, fontsize=8)
    right.set(ylabel="ms", title="POST to event received (SSE)")
    right.legend(fontsize=8)
    return save(fig, out, "postgres.png")


# --- the report --------------------------------------------------------------------------------


def render(m: Measured, p: Plan, out: Path) -> str:
    a, lat = m.append, m.append.latencies
    rate = a.rates
    ns = m.append_args.producers
    parts: list[str] = []
    add = parts.append
    form = "`--quick`: rough figures, it only proves the report is produced" if p.quick else "full form"
    add(f"# eventlog benchmark report\n\nGenerated by `benchmarks/report.py` ({form}) on "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; every figure next to baselines measured in the same run. "
        f"Run time: {sum(m.seconds.values()):.0f} s (" + ", ".join(f"{k} {v:.0f} s" for k, v in m.seconds.items()) + ").\n")

    add("\n## Targets (issue 10)\n\n")
    add(table(["measure", "measured", "target", "verdict"], [[t.measure, t.value, t.target, verdict(t)] for t in targets(m)]))

    add("\n## Machine and versions\n\n")
    add(table(["", ""], [[k, v] for k, v in environment(m)]))
    add("\nDurability settings:\n\n" + "".join(f"- {k}: {v}\n" for k, v in DURABILITY))

    add("\n## Append throughput vs producers\n\n")
    add(f"Each contender {m.append_args.seconds:g} s per round after {m.append_args.warmup:g} s warm-up, "
        f"{m.append_args.rounds} interleaved round(s), median round shown; one run per producer; "
        f"payload {append.PAYLOAD_BYTES} B of JSON encoded in the timed loop by every contender. CPU is this "
        "process' (all threads); for Redis that leaves out redis-server's own CPU. Redis XADD: one unpipelined "
        "`await xadd` per event from each producer, one connection per producer.\n\n")
    add(f"![append throughput]({plot_append(m, out)})\n\n")
    rows = [["sqlite3 executemany x100 (1 thread)", "-", f"{rate['executemany'].per_second:,.0f}", f"{rate['executemany'].cpu_per_row * 1e6:.0f}"],
            ["aiosqlite commit per event (1 producer)", "1", f"{rate['aiosqlite'].per_second:,.0f}", f"{rate['aiosqlite'].cpu_per_row * 1e6:.0f}"]]
    for n in ns:
        for key, name in (("eventlog", "eventlog"), ("redis", "Redis XADD"), ("memory", "in-memory bounded log")):
            r = rate.get(f"{key}@{n}")
            if r is not None:
                rows.append([name, str(n), f"{r.per_second:,.0f}", f"{r.cpu_per_row * 1e6:.0f}"])
    add(table(["contender", "producers", "rows/s", "CPU us/row"], rows))

    add("\n## Resume latency vs log size\n\n")
    add(f"The first page ({resume.PAGE} events) after a random cursor in the middle half of a random run, on one file "
        "grown through the sizes; `EventLog.read` from call to return, next to the same query on a bare sqlite3 connection.\n\n")
    add(f"![resume latency]({plot_resume(m, out)})\n\n")
    add(table(["rows", "EventLog.read p50", "p99", "bare sqlite3 p50", "p99", "reads"],
              [[f"{r.rows:,}", us(r.p50), us(r.p99), us(r.raw_p50), us(r.raw_p99), str(r.samples)] for r in m.resume]))

    add("\n## End-to-end SSE latency vs subscribers\n\n")
    add(f"One run, {m.sse_args.rate:.0f} events/s POSTed for {m.sse_args.seconds:g} s per configuration; latency from the "
        "start of the POST to the event in a subscriber's hands; eventlog served with one worker and with "
        "`--workers 2` (streams spread over two processes, each reading the other's commits back from the file), next "
        "to benchmarks/baselines/memory_broadcast.py (same endpoints and wire format, in memory, one process). The "
        "targets above are the one-worker figures.\n\n")
    add(f"![sse latency]({plot_sse(m, out)})\n\n")
    rows = []
    for n in m.sse_args.subscribers:
        e, w, b = m.sse["eventlog"].configs[n], m.sse_workers.configs[n], m.sse["baseline"].configs[n]
        rows.append([f"{n:,}", f"{e.p50 * 1e3:.1f} / {e.p99 * 1e3:.1f}", f"{w.p50 * 1e3:.1f} / {w.p99 * 1e3:.1f}",
                     f"{b.p50 * 1e3:.1f} / {b.p99 * 1e3:.1f}", f"{e.p99 / b.p99:.2f}x / {w.p99 / b.p99:.2f}x",
                     f"{e.us_per_chunk:,.0f} / {w.us_per_chunk:,.0f} / {b.us_per_chunk:,.0f}",
                     f"{e.delivered} / {w.delivered} / {b.delivered}"])
    add(table(["subscribers", "eventlog p50 / p99 ms", "2 workers p50 / p99 ms", "baseline p50 / p99 ms",
               "p99 ratio (1 / 2 workers)", "server us CPU/chunk (1 / 2 workers / baseline)",
               "delivered (1 / 2 workers / baseline)"], rows))

    add("\n## Memory per idle stream and server RSS\n\n")
    add(f"Server VmRSS delta after opening {m.sse_args.idle_streams} streams that receive nothing, divided by their number; "
        "RSS at idle: the server after a short warm-up, before the idle streams.\n\n")
    add(f"![memory]({plot_memory(m, out)})\n\n")
    ev, base = m.sse["eventlog"], m.sse["baseline"]
    add(table(["server", "KiB per idle stream", "RSS at idle MB"],
              [["eventlog", f"{ev.kib_per_stream:.1f}", f"{ev.rss_start_mib * 1.048576:.1f}"],
               ["in-memory broadcast", f"{base.kib_per_stream:.1f}", f"{base.rss_start_mib * 1.048576:.1f}"]]))

    add("\n## Wake-up latency\n\n")
    add(f"In-process: append start -> a live subscriber has the event, one event at a time ({lat['eventlog'][2]} events). "
        f"Cross-process: a child process appends one event every {m.append_args.interval * 1e3:g} ms, stamped before the "
        "append; this process' subscriber records receive - stamp.\n\n")
    add(f"![wake-up latency]({plot_wakeup(m, out)})\n\n")
    names = [("asyncio.Event", "bare asyncio.Event hand-off (floor)"), ("aiosqlite", "aiosqlite commit + signal + reader query"),
             ("eventlog", "eventlog append -> live subscriber"), ("eventlog-ack", "(eventlog append -> append returned)"),
             ("pipe", "pipe, child -> parent (cross-process floor)"), ("cross-process", "eventlog child append -> parent subscriber")]
    add(table(["path", "p50", "p99", "n"], [[name, us(lat[k][0]), us(lat[k][1]), str(lat[k][2])] for k, name in names]))
    cpu_rows = [[name, f"{100 * a.cpu[k][0] / a.cpu[k][1]:.2f}%"] for k, name in (
        ("stream", "subscribed to the child's stream"), ("idle-loop", "idle process, bare asyncio loop (baseline)"),
        ("idle-subscriber", "idle process holding a live eventlog subscriber"))]
    add("\n" + table(["process CPU (this process, all threads)", "share of a core"], cpu_rows))

    add("\n## Stream bridge publish\n\n")
    add(f"100 concurrent runs, one publisher task each, {p.bridge_events} events per run, best of {p.bridge_trials} "
        "(benchmarks/bridge.py); eventlog's SQLiteStreamBridge against the in-memory bounded-log bridge.\n\n")
    memory = m.bridge["in-memory"][0]
    add(table(["bridge", "events/s", "CPU us/event", "vs in-memory"],
              [[name, f"{r:,.0f}", f"{c * 1e6:.1f}", f"{r / memory:.0%}"] for name, (r, c) in m.bridge.items()]))

    add("\n## PostgreSQL backend next to SQLite\n\n")
    if isinstance(m.postgres, str):
        add(m.postgres + "\n")
    else:
        add(f"benchmarks/postgres.py on {m.postgres.where} ({postgres_version()}), next to SQLite and to plain "
            "asyncpg in the same run; the same producers (each awaiting its durable append) and the same SSE client as above. "
            "Cross-server: two `eventlog serve` processes on one log, the POST to A and the stream on B (PostgreSQL: "
            "LISTEN/NOTIFY; SQLite: both on one file, the file watch).\n\n")
        add(f"![postgres]({plot_postgres(m.postgres, out)})\n\n")
        add(postgres.markdown(m.postgres))

    add("\n## Durable Streams protocol vs the reference server\n\n")
    if isinstance(m.durable, str):
        add(m.durable + "\n")
    else:
        add(f"benchmarks/durable_streams.py: `eventlog serve` against the protocol's Node reference server "
            f"(`@durable-streams/server` {m.durable.reference_version}) in memory and file-backed, the same httpx "
            "client for every server.\n\n")
        add(durable_streams.markdown(m.durable))
    return "".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small and short configurations (well under 2 minutes)")
    parser.add_argument("--out", type=Path, default=HERE / "results", help="directory for REPORT.md and the plots")
    parser.add_argument("--ten-million", action="store_true", help="add a 10^7-row log to the resume figure (full form)")
    args = parser.parse_args()
    # SIGTERM unwinds like Ctrl-C, so the benchmarks' finally blocks stop every server they started.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    # 1,000 producers hold 1,000 Redis connections, 1,000 subscribers as many sockets: raise the
    # open-file limit before any child (redis-server, the servers) starts, so that they inherit it.
    sse.raise_nofile(8192)
    try:
        redis_server.executable()
        p = plan(args.quick, args.ten_million)
        measured = measure_all(p)
    except redis_server.RedisMissing as exc:
        sys.exit(f"report.py: {exc}")
    args.out.mkdir(parents=True, exist_ok=True)
    text = render(measured, p, args.out)
    (args.out / "REPORT.md").write_text(text)
    print(f"[report] wrote {args.out / 'REPORT.md'} in {sum(measured.seconds.values()):.0f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
