"""Every benchmark against one broker, as one table (printed, and saved as JSON).

    .venv/bin/python benchmarks/run_all.py              # the full run (~15 minutes on 2 cores)
    .venv/bin/python benchmarks/run_all.py --quick      # a smoke run with small N (~3 minutes)
    .venv/bin/python benchmarks/run_all.py --only producer,core
    .venv/bin/python benchmarks/run_all.py --bootstrap host:9092   # an existing broker

One local Kafka is started for the whole run (unless ``--bootstrap``); each benchmark
measures sensorlib and its baseline in the same run, on the same records. The table
(see benchmarks/README.md for how to read it) goes to stdout and, with every raw figure,
to ``benchmarks/results/latest.json``.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, os.path.dirname(__file__))

from common import broker, machine

RESULTS = Path(__file__).resolve().parent / "results" / "latest.json"


@dataclass(frozen=True)
class Sizes:
    """How much each benchmark does (full run, or ``--quick``)."""

    producer: int
    processor: int
    probes: int
    replay: int
    core: int
    dashboard_readings: int
    dashboard_minutes: float
    archive: int = 1_000_000
    archive_big: int = 10_000_000
    ingest_seconds: float = 5.0
    peers: int = 1_000_000
    observe: int = 300_000
    observe_rounds: int = 3
    notify: int = 50_000
    history_days: float = 7.0
    rules_days: float = 30.0
    rules_sweep_days: float = 7.0
    catalog_commits: int = 60
    archivers: int = 1_000_000
    archivers_steady: float = 30.0


FULL = Sizes(producer=300_000, processor=1_000_000, probes=200, replay=1_000_000, core=300_000,
             dashboard_readings=200, dashboard_minutes=1.0)
QUICK = Sizes(producer=30_000, processor=30_000, probes=20, replay=30_000, core=50_000,
              dashboard_readings=20, dashboard_minutes=0.25, archive=30_000,
              archive_big=300_000, ingest_seconds=2.0, peers=100_000,
              observe=30_000, observe_rounds=1, notify=10_000, history_days=0.5,
              rules_days=1.0, rules_sweep_days=0.5, catalog_commits=20, archivers=50_000,
              archivers_steady=5.0)


@dataclass(frozen=True)
class Row:
    """One line of the table."""

    what: str
    sensorlib: str
    baseline: str
    ratio: str
    target: str
    met: bool | None  # None: no target, or not measured

    def cells(self) -> list[str]:
        verdict = {True: "yes", False: "NO", None: "—"}[self.met]
        return [self.what, self.sensorlib, self.baseline, self.ratio, self.target, verdict]


def _rate(x: float) -> str:
    return f"{x:,.0f}/s"


def _ms(x: float) -> str:
    return f"{x:,.1f} ms"


# --------------------------------------------------------------- benchmarks → rows


def producer_rows(r: dict[str, Any]) -> list[Row]:
    ratio = r["ratio"]
    return [Row("producer: ReadingProducer vs plain kafka-python (pre-encoded)",
                _rate(r["reading_producer_per_s"]), _rate(r["plain_per_s"]),
                f"{ratio:.2f}×", "none (informative)", None)]


def processor_rows(r: dict[str, Any]) -> list[Row]:
    ratio = r["processor_vs_bare"]
    lat = r["post_to_alert_ms"]
    return [
        Row("processor: consume→windows→rules→alerts→txn commit vs bare consume+decode",
            _rate(r["processor_per_s"]), _rate(r["bare_consume_decode_per_s"]),
            f"{ratio:.2f}×", "≥ 0.7×", ratio >= 0.7),
        Row(f"POST /api/events → alert at a read_committed reader ({lat['received']}/"
            f"{lat['probes']} probes)",
            f"p50 {_ms(lat['p50_ms'])}, p99 {_ms(lat['p99_ms'])}", "—", "—", "p99 < 50 ms",
            lat["p99_ms"] < 50),
    ]


def replay_rows(r: dict[str, Any]) -> list[Row]:
    ratio = r["ratio"]
    return [Row("replay: read_readings → DataFrame vs bare consume",
                _rate(r["replay_rate"]), _rate(r["bare_rate"]), f"{ratio:.2f}×", "≥ 0.8×",
                ratio >= 0.8)]


def core_rows(r: dict[str, Any]) -> list[Row]:
    rate, ratio = r["pipeline_per_s"], r["pipeline_vs_recompute"]
    return [Row("windows+rules: Pipeline.process vs recompute-the-window per event",
                _rate(rate), _rate(r["recompute_per_s"]), f"{ratio:,.0f}×",
                "≥ 100k/s and ≥ 20×", rate >= 100_000 and ratio >= 20),
            Row(f"windows+rules, a poll at once (process_batch_us, 20,000 readings) vs one by "
                f"one (same {r['alerts']:,} alerts)", _rate(r["batch_per_s"]), _rate(rate),
                f"{r['batch_vs_pipeline']:.1f}×", "none (informative)", None)] + ([
            Row("windows+rules+ml_score (online ML, off by default) vs the default rules, a poll "
                f"at once ({r['ml_alerts']:,} more alerts)", _rate(r["ml_per_s"]),
                _rate(r["batch_per_s"]), f"{r['ml_vs_batch']:.2f}×", "none (informative)",
                None)] if r.get("ml_per_s") else [])


def rules_rows(r: dict[str, Any]) -> list[Row]:
    month, sweep = r["month_s"], r["sweep_s"]
    full = r["readings"] > 6_000_000
    return [Row(f"every rule over {r['readings']:,} readings (run_frame, columnar) vs the per-row "
                f"path (scaled from {r['sample']:,})", f"{month:.1f} s",
                f"{r['old_month_s_scaled']:.0f} s", f"{r['month_speedup']:.1f}×",
                "≤ 10 s for a month", month <= 10 if full else None),
            Row(f"tuning sweep, {r['sweep_values']} values over {r['sweep_readings']:,} readings vs "
                f"the per-row path (scaled)", f"{sweep:.1f} s", f"{r['old_sweep_s_scaled']:.0f} s",
                f"{r['sweep_speedup']:.1f}×", "≤ 15 s for a week",
                sweep <= 15 if full else None)]


def archive_rows(r: dict[str, Any]) -> list[Row]:
    ratio, speedup = r["archiver_vs_bare"], r["hour_speedup"]
    hour, daily = r["big_hour_archive_s"], r["big_sql_daily_stats_s"]
    topic = r["topic_mb_per_million"]
    return [
        Row("archiver: consume→validate→Parquet→Iceberg commit with offsets vs bare consume",
            _rate(r["archiver_rate"]), _rate(r["bare_rate"]), f"{ratio:.2f}×", "≥ 0.8×",
            ratio >= 0.8),
        Row(f"1-hour read_readings by event time, archive+tail vs Kafka alone "
            f"({r['hour_rows']:,} rows)", _ms(r["hour_archive_s"] * 1000),
            f"{r['hour_kafka_s']:.2f} s", f"{speedup:,.0f}×", "≥ 20×", speedup >= 20),
        Row(f"1-hour read_readings over {r['big_rows']:,} archived readings (30 days)",
            _ms(hour * 1000), "—", "—", "≤ 500 ms", hour <= 0.5),
        Row(f"SQL daily stats per sensor over {r['big_rows']:,} readings (DuckDB)",
            _ms(daily * 1000), "—", "—", "≤ 2 s", daily <= 2.0),
        Row("archive size per 1M readings vs the topic's log",
            f"{r['archive_mb_per_million']} MB", "n/a" if topic is None else f"{topic} MB",
            "—" if topic is None else f"{topic / r['archive_mb_per_million']:.0f}× smaller",
            "report", None),
    ]


def spark_rows(r: dict[str, Any]) -> list[Row]:
    return [
        Row(f"SQL daily stats over {r['rows']:,} readings: Spark {r['spark_master']} (warm) vs "
            "DuckDB, the same SQL", _ms(r["spark_warm_s"] * 1000), _ms(r["duckdb_s"] * 1000),
            f"{r['spark_vs_duckdb']:.1f}× DuckDB's time", "report", None),
        Row("Spark: session start-up (JVM, jars, catalog) and the first query",
            f"{r['spark_session_s']:.1f} s + {r['spark_cold_s']:.1f} s", "—", "—", "report",
            None),
    ]


def archivers_rows(r: dict[str, Any]) -> list[Row]:
    ratio = r["two_vs_one"]
    steady = r.get("steady_conflicts_per_min")
    return [
        Row(f"archive, 2 archivers in one group vs 1, catching up on {r['n']:,} readings "
            f"(processes; broker on the same 2 cores; median of {r['rounds']}, "
            f"{r['ratio_min']:.2f}–{r['ratio_max']:.2f}×)",
            _rate(r["two_rate"]), _rate(r["one_rate"]), f"{ratio:.2f}×", "report", None),
        Row("archive, commit conflicts per minute with 2 writers (catching up / a steady "
            "5,000 readings/s, 1 s batches)",
            f"{r['catch_up_conflicts_per_min']:g} / "
            f"{'—' if steady is None else format(steady, 'g')}", "—", "—", "report", None),
    ]


def history_rows(r: dict[str, Any]) -> list[Row]:
    days, month = r["days"], 30 / r["days"]
    read_s, peak = r["read_s"] * month, r["peak_added_bytes"] * month / 1e9
    # Shorter periods are scaled linearly (fixed costs too): checked against the goals only
    # when a month (28+ days) was measured.
    scaled = "" if days == 30 else f" (measured over {days:g} days, ×{month:.1f})"
    return [
        Row(f"a month of history into pandas, read_readings(source='archive'){scaled}",
            f"{read_s:,.1f} s, peak +{peak:.2f} GB",
            f"{r['baseline_read_s'] * month:,.1f} s, +{r['baseline_peak_added_bytes'] * month / 1e9:.2f}"
            " GB (the read before, same run)",
            f"{r['baseline_read_s'] / r['read_s']:.2f}× faster", "≤ 4 s, ≤ 1 GB",
            (read_s <= 4 and peak <= 1) if days >= 28 else None),
        Row(f"History tab, 5 sensors, {r['view_rows']:,} readings ({days:g} days): first draw "
            "(view + Bokeh figure + JSON)", f"{r['first_draw_json_s']:.2f} s",
            f"{r['points_drawn']:,} points drawn", "—", "≤ 1.5 s for a month",
            r["first_draw_json_s"] <= 1.5 if days >= 28 else None),
        Row(f"History tab, each zoom (mean + min–max band of the visible range, {r['zooms']} zooms "
            "from a day to 2 min)", _ms(r["zoom_median_s"] * 1000),
            f"worst {_ms(r['zoom_max_s'] * 1000)}", "—", "≤ 300 ms", r["zoom_max_s"] <= 0.3),
    ]


def catalog_rows(r: dict[str, Any]) -> list[Row]:
    pg, lite, ratio = r["postgres_ms"], r["sqlite_ms"], r["postgres_vs_sqlite"]
    ops = ("load_table", "list_tables", "plan_day")
    return [
        Row(f"catalog lookups on PostgreSQL vs the sqlite file: load_table / list tables / "
            f"plan of one event day ({r['commits']} commits, medians)",
            " / ".join(_ms(pg[op]) for op in ops), " / ".join(_ms(lite[op]) for op in ops),
            " / ".join(f"{ratio[op]:.2f}×" for op in ops), "report", None),
        Row("sensorlib sql's three views (connect, tail=False) on PostgreSQL vs sqlite",
            _ms(pg["sql_views"]), _ms(lite["sql_views"]), f"{ratio['sql_views']:.2f}×",
            "report", None),
    ]


def dashboard_rows(r: dict[str, Any]) -> list[Row]:
    p95, load = r["latency_p95_ms"], r["page_load_fleet_s"]
    return [
        Row(f"page load with {r['fleet_sensors']:,} sensors vs 5 (Chromium)",
            f"{load:.2f} s", f"{r['page_load_baseline_s']:.2f} s",
            f"{r['page_load_ratio']:.2f}×", "< 3 s", load < 3.0),
        Row(f"produce → visible in Chromium ({r['latency_readings']} readings)",
            f"p50 {_ms(r['latency_p50_ms'])}, p95 {_ms(p95)}", "—", "—", "p95 < 1 s",
            p95 < 1000)]


def peers_rows(r: dict[str, Any]) -> list[Row]:
    races = r["races"]
    one, two, fetch = races["processor_1"], races["processor_2"], races["fetch"]
    rows = []
    if "reference" in races:
        ref = races["reference"]
        ratio = r["processor_vs_reference_per_cpu"]
        rows.append(Row(
            "processor vs the reference consumer (confluent-kafka loop), per CPU-second "
            f"(wall: {_rate(one['per_s'])} vs {_rate(ref['per_s'])})",
            _rate(one["per_cpu_s"]), _rate(ref["per_cpu_s"]), f"{ratio:.2f}×", "≥ 1.5×",
            ratio >= 1.5))
    ratio = r["processor_vs_fetch"]
    rows.append(Row("processor vs kafka-python's own fetch (no decoding), wall clock",
                    _rate(one["per_s"]), _rate(fetch["per_s"]), f"{ratio:.2f}×", "≥ 0.9×",
                    ratio >= 0.9))
    fast = races["fetch_fast"]
    ratio = r["processor_vs_fetch_fast"]
    rows.append(Row("processor vs its own fetch path (the fetch with sensorlib's record "
                    f"unpacking, {r['fetch_fast_vs_fetch']:.2f}× kafka-python's), wall clock",
                    _rate(one["per_s"]), _rate(fast["per_s"]), f"{ratio:.2f}×",
                    "none (informative)", None))
    ratio = r["workers_2_vs_1"]
    rows.append(Row("processor, 2 workers vs 1 (wall clock; broker on the same 2 cores)",
                    _rate(two["per_s"]), _rate(one["per_s"]), f"{ratio:.2f}×",
                    "none (informative)", None))
    return rows


def observe_rows(r: dict[str, Any]) -> list[Row]:
    rates, ratio = r["processor_per_s"], r["tracing_on_vs_off"]
    return [Row("processor, tracing on (every reading traced, spans exported) vs off",
                _rate(rates["on"]), _rate(rates["off"]), f"{ratio:.2f}×",
                "report the cost", None)]


def ingest_rows(r: dict[str, Any]) -> list[Row]:
    rows = []
    previous = {p["clients"]: p for p in r["post_previous"]}
    for row in r["post"]:
        n, prev = row["clients"], previous[row["clients"]]
        met = (row["rate"] >= 2000 and row["p99_ms"] <= 100) if n == 32 else None
        rows.append(Row(
            f"POST /api/events at {n} clients (errors {row['errors']}, 429s {row['too_many']}) "
            "vs the previous stack (thread per request)",
            f"{_rate(row['rate'])}, p50 {_ms(row['p50_ms'])}, p99 {_ms(row['p99_ms'])}",
            f"{_rate(prev['rate'])}, p99 {_ms(prev['p99_ms'])}",
            f"{r['post_vs_previous'][str(n)]:.1f}×",
            "≥ 2,000/s and p99 ≤ 100 ms" if n == 32 else "none (informative)", met))
    b = r["batch"]
    rows.append(Row(
        f"batch POST readings/s ({r['batch_size']:,}-reading arrays, {r['batch_clients']} clients) "
        "vs bare kafka-python send", _rate(b["readings_per_s"]), _rate(r["bare_send_per_s"]),
        f"{r['batch_vs_bare_send']:.2f}×", "≥ 30,000/s", b["readings_per_s"] >= 30_000))
    return rows


def gate_rows(r: dict[str, Any]) -> list[Row]:
    rows = []
    for name, f in r["forms"].items():
        ratio = min(f["poll_vs_canonical"], f["columns_vs_canonical"])
        rows.append(Row(f"the gate, {name}: poll path (judge+windows+rules) / columns "
                        "(archive, replay) vs canonical",
                        f"{_rate(f['poll_per_s'])} / {_rate(f['columns_per_s'])}",
                        "canonical form", f"{f['poll_vs_canonical']:.2f}× / "
                        f"{f['columns_vs_canonical']:.2f}×", "≥ 0.9×", ratio >= 0.9))
    return rows


def notify_rows(r: dict[str, Any]) -> list[Row]:
    wait = r["group_wait_s"]
    return [
        Row(f"notifier → Alertmanager, {r['n']:,} alerts in batches (offsets committed after "
            "each; from the group's start / once joined)",
            f"{_rate(r['alerts_per_s'])} / {_rate(r.get('alerts_per_s_joined', 0))}", "—", "—",
            "≥ 5,000/s", r.get("alerts_per_s_joined", r["alerts_per_s"]) >= 5000),
        Row(f"alert published → webhook received, p95 of {r['probes']} (group_wait {wait:g} s)",
            _ms(r["latency_p95_s"] * 1000), f"p50 {_ms(r['latency_p50_s'] * 1000)}", "—",
            f"≤ {(wait + 1) * 1000:,.0f} ms", r["latency_p95_s"] <= wait + 1),
    ]


def exhaustion_rows(r: dict[str, Any]) -> list[Row]:
    cpu = ("server_cpu_us_per_request_idle", "server_cpu_us_per_request_clear")
    idle_cpu, clear_cpu = (f", {r[k]:,.0f} µs CPU/request" if k in r else "" for k in cpu)
    return [Row(f"POST /api/events, {r['clients']} clients, with {r['idle']:,} idle sockets open vs "
                f"none (median of {r.get('rounds', 1)} interleaved rounds; /health "
                f"{r['health_idle_ms']:.0f} ms with them, {r['health_clear_ms']:.0f} ms without)",
                f"{_rate(r['rate_idle'])}, p99 {_ms(r['p99_idle_ms'])}{idle_cpu}",
                f"{_rate(r['rate_clear'])}, p99 {_ms(r['p99_clear_ms'])}{clear_cpu}",
                f"{r['ratio']:.2f}×", "≥ 0.9×", r["ratio"] >= 0.9)]


@dataclass(frozen=True)
class Bench:
    """A benchmark module, how to call its ``run`` and how to tabulate the answer."""

    name: str
    module: str
    call: Callable[[Any, str, Sizes], dict[str, Any]]
    rows: Callable[[dict[str, Any]], list[Row]]


BENCHES = [
    Bench("producer", "bench_producer", lambda m, b, s: m.run(b, s.producer), producer_rows),
    Bench("processor", "bench_processor", lambda m, b, s: m.run(b, s.processor, s.probes),
          processor_rows),
    Bench("replay", "bench_replay", lambda m, b, s: m.run(b, s.replay), replay_rows),
    Bench("core", "bench_core", lambda m, b, s: m.run(s.core), core_rows),
    Bench("gate", "bench_gate", lambda m, b, s: m.run(s.core), gate_rows),
    Bench("rules", "bench_rules", lambda m, b, s: m.run(s.rules_days, s.rules_sweep_days),
          rules_rows),
    Bench("archive", "bench_archive", lambda m, b, s: m.run(b, s.archive, s.archive_big),
          archive_rows),
    Bench("spark", "bench_spark", lambda m, b, s: m.run(s.archive_big), spark_rows),
    Bench("archivers", "bench_archivers",
          lambda m, b, s: m.run(b, s.archivers, 2, s.archivers_steady), archivers_rows),
    Bench("peers", "bench_peers", lambda m, b, s: m.run(b, s.peers), peers_rows),
    Bench("observe", "bench_observe",
          lambda m, b, s: m.run(b, s.observe, s.observe_rounds, None), observe_rows),
    Bench("ingest", "bench_ingest", lambda m, b, s: m.run(b, s.ingest_seconds), ingest_rows),
    Bench("exhaustion", "bench_exhaustion", lambda m, b, s: m.run(b, s.ingest_seconds),
          exhaustion_rows),
    Bench("notify", "bench_notify", lambda m, b, s: m.run(b, s.notify), notify_rows),
    Bench("history", "bench_history", lambda m, b, s: m.run(b, s.history_days), history_rows),
    Bench("catalog", "bench_catalog", lambda m, b, s: m.run(b, s.catalog_commits), catalog_rows),
    Bench("dashboard", "bench_dashboard",
          lambda m, b, s: m.run(b, readings=s.dashboard_readings, minutes=s.dashboard_minutes),
          dashboard_rows),
]


# --------------------------------------------------------------- running and printing


def run_selected(names: list[str], bootstrap: str, sizes: Sizes) -> tuple[list[Row], dict[str, Any]]:
    """Run the chosen benchmarks in order; a failing or missing one becomes a note row."""
    rows: list[Row] = []
    raw: dict[str, Any] = {}
    for bench in BENCHES:
        if bench.name not in names:
            continue
        print(f"\n== {bench.name} ==", flush=True)
        try:
            module = importlib.import_module(bench.module)
        except ModuleNotFoundError as exc:
            if exc.name != bench.module:
                raise
            raw[bench.name] = {"skipped": f"benchmarks/{bench.module}.py does not exist yet"}
            rows.append(Row(f"{bench.name}: skipped ({bench.module}.py not found)",
                            "—", "—", "—", "—", None))
            continue
        started = time.perf_counter()
        try:
            result = bench.call(module, bootstrap, sizes)
        except Exception as exc:  # noqa: BLE001 - one broken benchmark must not hide the rest
            traceback.print_exc()
            raw[bench.name] = {"error": f"{type(exc).__name__}: {exc}"}
            rows.append(Row(f"{bench.name}: FAILED ({type(exc).__name__}: {exc})"[:100],
                            "—", "—", "—", "—", False))
            continue
        result = {k: v for k, v in result.items() if k != "rss_samples"}
        result["seconds"] = round(time.perf_counter() - started, 1)
        raw[bench.name] = result
        rows.extend(bench.rows(result))
    return rows, raw


def table(rows: list[Row]) -> str:
    """The rows as a Markdown table (also readable in a terminal)."""
    header = ["what", "sensorlib", "baseline", "ratio", "target", "met"]
    lines = [header] + [row.cells() for row in rows]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    out = []
    for i, line in enumerate(lines):
        out.append("| " + " | ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)) + " |")
        if i == 0:
            out.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small N: a smoke run")
    parser.add_argument("--only", help="comma-separated subset of: "
                        + ", ".join(b.name for b in BENCHES))
    parser.add_argument("--bootstrap", help="an existing broker (default: start a local one)")
    parser.add_argument("--json", type=Path, default=RESULTS, help=f"where to save ({RESULTS})")
    args = parser.parse_args(argv)
    names = [b.name for b in BENCHES]
    if args.only:
        chosen = [n.strip() for n in args.only.split(",") if n.strip()]
        unknown = sorted(set(chosen) - set(names))
        if unknown:
            parser.error(f"unknown benchmark(s) {unknown}; choose from {names}")
        names = chosen
    sizes = QUICK if args.quick else FULL
    started = datetime.now(UTC)
    with broker(args.bootstrap) as base:
        rows, raw = run_selected(names, base.bootstrap_servers, sizes)
    where = machine()
    load = os.getloadavg()
    print(f"\nsensorlib benchmarks — {where}")
    print(f"{started:%Y-%m-%d %H:%M} UTC, {'quick' if args.quick else 'full'} run, "
          f"load average at the end {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f}\n")
    print(table(rows))
    report = {
        "machine": where, "started": started.isoformat(), "quick": args.quick,
        "load_average": load, "sizes": sizes.__dict__, "table": table(rows),
        "rows": [row.__dict__ for row in rows], "results": raw,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2, default=str))
    print(f"\nSaved to {args.json}")
    return 1 if any(row.met is False and "FAILED" in row.what for row in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
