"""The commands that run things: the broker, topics, the simulator, the services, replay,
the archiver, the notifier, SQL, the report, the dashboard and ``sensorlib up``."""

from __future__ import annotations

import argparse
import signal
import threading
import time
from collections.abc import Callable

from sensorlib.config import Settings
from sensorlib.errors import ConfigError, UsageError

Handler = Callable[[argparse.Namespace, Settings], int]
from sensorlib.cli.common import _check_port, _say

# --------------------------------------------------------------------------- broker


def _local_kafka(settings: Settings):
    from sensorlib.kafka.broker import LocalKafka

    return LocalKafka.from_settings(settings)


def cmd_broker(args: argparse.Namespace, settings: Settings) -> int:
    from sensorlib.kafka.jars import KAFKA_VERSION, resolve_libs

    if settings.external and args.action in ("start", "stop"):
        _say(
            f"Kafka is configured as an external cluster ({settings.bootstrap_servers}); "
            "no local broker is started or stopped. Unset KAFKA_BOOTSTRAP_SERVERS to use one."
        )
        return 0
    kafka = _local_kafka(settings)
    if args.action == "fetch":
        libs = resolve_libs(settings, progress=_say)
        _say(f"Apache Kafka {KAFKA_VERSION} jars: {libs}")
        return 0
    if args.action == "status":
        rows = kafka.status()
        for row in rows:
            state = "running" if row["pid"] else "stopped"
            print(f"node {row['node']}: {state} pid={row['pid']} port={row['port']} "
                  f"listening={row['listening']} log={row['log']}")
        return 0 if kafka.running() else 3
    if args.action == "stop":
        was_running = kafka.running()
        kafka.stop()
        _say("Kafka stopped." if was_running else "Kafka was not running.")
        return 0
    # start
    already = kafka.running()
    kafka.start(timeout=args.timeout, progress=_say)
    if already:
        _say("(it was already running)")
    if args.detach:
        _say(f"Running in the background; logs in {kafka.nodes[0].log_file}. "
             "Stop it with `sensorlib broker stop`.")
        return 0
    _say("Press Ctrl-C to stop.")
    try:
        _wait_for_signal(lambda: kafka.running())
    finally:
        kafka.stop()
        _say("Kafka stopped.")
    return 0


def _wait_for_signal(alive: Callable[[], bool]) -> None:
    """Sleep until SIGINT/SIGTERM, or until ``alive()`` turns False."""
    stop = {"now": False}

    def handler(signum: int, frame: object) -> None:
        stop["now"] = True

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    while not stop["now"] and alive():
        time.sleep(0.5)


def cmd_topics(args: argparse.Namespace, settings: Settings) -> int:
    from sensorlib.kafka.admin import ensure_topics, wait_for_kafka

    wait_for_kafka(settings, timeout=args.timeout)
    for topic, status in ensure_topics(settings).items():
        print(f"{topic}: {status}")
    return 0


# --------------------------------------------------------------------------- streams


def cmd_simulate(args: argparse.Namespace, settings: Settings) -> int:
    from sensorlib.ingest.produce import run_simulation
    from sensorlib.kafka.admin import ensure_topics, wait_for_kafka

    wait_for_kafka(settings, timeout=30)
    ensure_topics(settings)
    interval = 1.0 / args.rate if args.rate else settings.interval
    if (args.duration is None and args.count is None and not args.realtime
            and not args.start):
        _say("error: --fast needs --count, --duration (simulated seconds) or --start "
             "(--end defaults to now)")
        return 2
    started = time.monotonic()
    mode = "real time" if args.realtime else "as fast as Kafka takes them"
    _say(f"Simulating 5 sensors, one reading each every {interval:g}s of event time, {mode} "
         f"→ {settings.topic_readings} at {settings.bootstrap_servers}")

    def progress(batch: list) -> None:
        for r in batch:
            print(f"{r.timestamp:%H:%M:%S} {r.sensor_id} {r.temperature:6.1f}°C {r.humidity:5.1f}%",
                  flush=True)

    if args.realtime and (args.start or args.end):
        _say("error: --start/--end set the event times of a back-fill: use them with --fast")
        return 2
    n = run_simulation(settings, interval=interval, duration=args.duration, count=args.count,
                       seed=args.seed, realtime=args.realtime,
                       on_batch=progress if args.realtime and not args.quiet else None,
                       start=args.start, end=args.end)
    elapsed = time.monotonic() - started
    _say(f"Published {n} readings in {elapsed:.1f}s ({n / max(elapsed, 1e-9):,.0f}/s).")
    return 0


def cmd_producer(args: argparse.Namespace, settings: Settings) -> int:
    from sensorlib.services import serve
    from sensorlib.services.producer import create_app

    host, port = args.host or settings.host, args.port or settings.producer_port
    _check_port(host, port, "producer API", "--port" if args.port else "SENSORLIB_PRODUCER_PORT")
    interval = 1.0 / args.rate if args.rate else None
    app = create_app(settings, simulate=not args.no_simulate, interval=interval)
    serve(app, host, port)
    return 0


def cmd_processor(args: argparse.Namespace, settings: Settings) -> int:
    from sensorlib.services import serve

    host, port = args.host or settings.host, args.port or settings.processor_port
    _check_port(host, port, "processor API", "--port" if args.port else "SENSORLIB_PROCESSOR_PORT")
    if args.workers > 1:
        from sensorlib.services.workers import Workers, create_front_app

        workers = Workers(settings, args.workers, instance=args.instance)
        serve(create_front_app(settings, workers), host, port)
        return 0
    import gc

    from sensorlib.services.processor import create_app

    # The loop allocates a few short-lived objects per record: collecting the young
    # generation every 700 allocations cost ~10 % of the processor's CPU.
    gc.set_threshold(50_000, 20, 20)
    serve(create_app(settings, instance=args.instance), host, port)
    return 0


def cmd_replay(args: argparse.Namespace, settings: Settings) -> int:
    import warnings

    from sensorlib.replay.export import write_frame
    from sensorlib.replay.reader import DEFAULT_SLACK, ReplayWarning, read_alerts, read_readings

    read = read_alerts if args.alerts else read_readings
    with warnings.catch_warnings():  # shown below, without a source line
        warnings.simplefilter("ignore", ReplayWarning)
        frame = read(args.start, args.end or "now", args.sensor or None, settings=settings,
                     source=args.source, slack=None if args.from_beginning else DEFAULT_SLACK)
    what = "alerts" if args.alerts else "readings"
    if frame.empty:  # exit 4, and no empty file a script would take for a result
        from sensorlib.errors import EmptyReport

        for message in frame.attrs.get("warnings", []):
            _say(f"warning: {message}")
        sensors = f" from {', '.join(args.sensor)}" if args.sensor else ""
        raise EmptyReport(f"no {what}{sensors} between {args.start or 'the beginning'} and "
                          f"{args.end or 'now'}; nothing written to {args.out} — widen the "
                          "period (--start/--end) or check the sensor names")
    out = write_frame(frame, args.out, force=args.force)
    where = {"kafka": "Kafka", "archive": "the archive"}.get(
        frame.attrs.get("source", ""),
        f"{frame.attrs.get('from_archive', 0):,} from the archive, "
        f"{frame.attrs.get('from_kafka', 0):,} records read from Kafka")
    invalid = frame.attrs.get("invalid")
    _say(f"{len(frame):,} {what} → {out} ({where})"
         + (f" ({invalid} invalid record(s) skipped)" if invalid else ""))
    for message in frame.attrs.get("warnings", []):
        _say(f"warning: {message}")
    return 0


def cmd_archive(args: argparse.Namespace, settings: Settings) -> int:
    from sensorlib.history.archiver import Archiver
    from sensorlib.history.compact import compact
    from sensorlib.history.writer import can_fork_writer
    from sensorlib.kafka.admin import ensure_topics, wait_for_kafka
    from sensorlib.services.health import serve_health

    if args.action == "compact":
        report = compact(settings, min_files=args.min_files, progress=_say)
        for topic, figures in report.items():
            print(f"{topic}: {figures['days_rewritten']} day(s) rewritten, "
                  f"{figures['snapshots_expired']} snapshot(s) expired, "
                  f"{figures['files_deleted']} unreferenced file(s) deleted")
        return 0
    if args.workers > 1 and args.until_caught_up:
        raise UsageError("--workers needs the service: with --until-caught-up one archiver "
                         "reads every partition")
    if not args.until_caught_up:  # before waiting for Kafka: refuse a taken port at once
        _check_port(args.host or settings.host,
                    settings.archiver_port if args.port is None else args.port,
                    "archiver /health", "SENSORLIB_ARCHIVER_PORT" if args.port is None
                    else "--port")
    wait_for_kafka(settings, timeout=60)
    ensure_topics(settings)
    if args.workers > 1:
        from sensorlib.services import serve
        from sensorlib.services.workers import Workers, create_archive_front_app

        options = ["--batch-rows", str(args.batch_rows), "--batch-seconds",
                   str(args.batch_seconds)] + (["--writer", args.writer] if args.writer else [])
        workers = Workers(settings, args.workers, service="archive", options=options)
        host = args.host or settings.host
        port = settings.archiver_port if args.port is None else args.port
        _say(f"{args.workers} archivers in the group {settings.archiver_group}; their "
             f"/health on http://{host}:{port}/health")
        serve(create_archive_front_app(settings, workers), host, port)
        return 0
    # A fresh process that has not used Arrow yet: the writer may be a forked child.
    writer = args.writer or ("process" if can_fork_writer() else "thread")
    archiver = Archiver(settings, batch_rows=args.batch_rows, batch_seconds=args.batch_seconds,
                        writer=writer)
    server = None
    if not args.until_caught_up:
        host = args.host or settings.host
        port = settings.archiver_port if args.port is None else args.port
        server = serve_health("archiver", archiver.health, archiver.metrics.registry, settings,
                              host, port)
        _say(f"archiver health on http://{host}:{server.server_address[1]}/health")
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda signum, frame: stop.set())
    _say(f"archiving {settings.topic_readings} and {settings.topic_alerts} into "
         f"{settings.warehouse} (batches of {args.batch_rows:,} records or "
         f"{args.batch_seconds:g}s)")
    try:
        done = archiver.run(stop, until_caught_up=args.until_caught_up)
    finally:
        if server is not None:
            server.shutdown()
    _say("archived " + ", ".join(f"{n:,} from {t}" for t, n in done.items()))
    return 0


def cmd_notify(args: argparse.Namespace, settings: Settings) -> int:
    from sensorlib.kafka.admin import ensure_topics, wait_for_kafka
    from sensorlib.notify.notifier import Notifier
    from sensorlib.observe.logs import configure_logging
    from sensorlib.observe.tracing import setup_tracing, shutdown_tracing
    from sensorlib.services.common import SERVICE_LOG_FORMAT
    from sensorlib.services.health import serve_health

    host = args.host or settings.host
    port = settings.notifier_port if args.port is None else args.port
    _check_port(host, port, "notifier /health",
                "SENSORLIB_NOTIFIER_PORT" if args.port is None else "--port")
    configure_logging("notifier", text_format=SERVICE_LOG_FORMAT,
                      secrets=[settings.sasl_password, settings.smtp_password],
                      log_format=settings.log_format)
    setup_tracing("sensorlib-notifier")
    wait_for_kafka(settings, timeout=60)
    ensure_topics(settings)
    notifier = Notifier(settings, max_batch=args.max_batch)
    server = serve_health("notifier", notifier.health, notifier.metrics.registry, settings,
                          host, port)
    _say(f"notifier health on http://{host}:{server.server_address[1]}/health; sending "
         f"{settings.topic_alerts} to Alertmanager at {settings.alertmanager}")
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda signum, frame: stop.set())
    try:
        sent = notifier.run(stop)
    finally:
        server.shutdown()
        shutdown_tracing()
    _say(f"sent {sent:,} alert(s) to Alertmanager")
    return 0


def cmd_sql(args: argparse.Namespace, settings: Settings) -> int:
    from sensorlib.history.query import catalog_exists, named_query
    from sensorlib.history.sqlshell import Session, run_prompt

    if not catalog_exists(settings):
        _say(f"note: there is no archive in {settings.warehouse} yet (start `sensorlib "
             "archive`); the views are empty")
    if args.query is None:  # the prompt: one connection for every query
        if args.out:
            raise ConfigError("--out needs a query (at the prompt: .out FILE)")
        return run_prompt(settings, tail=not args.no_tail, max_rows=args.max_rows)
    session = Session(settings, tail=not args.no_tail)
    try:
        table = session.query(named_query(args.query))
    finally:
        session.close()
    for note in session.notes:
        _say(f"note: {note}")
    tail = {view: rows for view, rows in session.tail_rows.items() if rows}
    if tail:
        _say("note: the views include what Kafka holds beyond the archive ("
             + ", ".join(f"{view}: {rows:,} rows" for view, rows in tail.items())
             + "; --no-tail for the archive alone)")
    return _show_result(table, args)


def _show_result(table, args: argparse.Namespace) -> int:
    """Print a query's Arrow result (``--max-rows``) or write it to ``--out``."""
    from sensorlib.history.sqlshell import format_table
    from sensorlib.replay.export import write_frame

    if args.out:  # Arrow, not pandas: dates stay dates, integer sums integers
        out = write_frame(table, args.out, force=args.force)
        _say(f"{table.num_rows:,} rows → {out}")
        return 0
    print(format_table(table, args.max_rows))
    if table.num_rows > args.max_rows:
        _say(f"… {table.num_rows - args.max_rows:,} more rows ({table.num_rows:,} in all; "
             "--out writes them all)")
    return 0


def cmd_spark_sql(args: argparse.Namespace, settings: Settings) -> int:
    """``sensorlib spark-sql "select …"``: one query in a local Spark session on the archive."""
    from sensorlib.history import spark
    from sensorlib.history.queries import named_query

    if args.master is not None and not args.master.strip():
        raise ConfigError("--master is empty (e.g. local[2], spark://host:7077)")
    query = named_query(args.query)
    if not query.strip():
        raise ConfigError("the SQL query is empty")
    if args.out:  # before Spark's start-up (seconds), not after it
        from pathlib import Path

        from sensorlib.errors import ExportError
        from sensorlib.replay.export import SUFFIXES

        out = Path(args.out)
        if out.suffix not in SUFFIXES:
            raise ExportError(f"the output must end in .parquet or .csv, got {out.name!r}")
        if out.exists() and not args.force:
            raise ExportError(f"{out} already exists; choose another name, or pass --force "
                              "to replace it")
    table = spark.sql(query, settings, master=args.master or "local[2]", progress=_say)
    return _show_result(table, args)


def cmd_report(args: argparse.Namespace, settings: Settings) -> int:
    from sensorlib.errors import EmptyReport, KafkaUnavailable, UnknownSensor
    from sensorlib.notebook.runner import run_report

    try:
        executed = run_report(args.start, args.end, args.out, args.sensor or None, settings,
                              timeout=args.timeout, keep=args.keep)
    except KafkaUnavailable as exc:  # exit code 3, as every command with Kafka down
        exc.args = (f"no report: {exc}",)
        raise
    except EmptyReport as exc:
        # A sensor asked for that sent nothing (``no readings from 'x' …``; the notebook's
        # EmptyReport crosses papermill as text) is exit code 5, an empty period 4.
        if type(exc) is EmptyReport and args.sensor and "no readings from " in str(exc):
            raise UnknownSensor(str(exc)) from None
        raise
    print(f"report: {executed.with_suffix('.html')} (notebook {executed}; "
          f"index {executed.parent / 'index.html'})")
    return 0


#: Longest simulated history ``sensorlib backtest`` builds in memory.
MAX_BACKTEST_DAYS = 366


def cmd_backtest(args: argparse.Namespace, settings: Settings) -> int:
    """Simulate ``--days`` of the reference fleet in memory and score the configured rules
    against the faults injected (no Kafka)."""

    from sensorlib.errors import UsageError
    from sensorlib.notebook.backtest import simulated_history

    # In memory: a year of the reference fleet is ~15M readings. NaN fails every comparison.
    if not (0 < args.days <= MAX_BACKTEST_DAYS and 0 < args.interval <= 86400):
        raise UsageError(f"--days must be in (0, {MAX_BACKTEST_DAYS}] and --interval in "
                         f"(0, 86400] seconds (got --days {args.days:g}, "
                         f"--interval {args.interval:g})")
    began = time.perf_counter()
    if args.end and not args.start:
        raise UsageError("--end needs --start (the period of archived history to score)")
    if args.start:
        return _backtest_archive(args, settings, began)
    _say(f"backtest: simulating {args.days:g} day(s) of the reference fleet in memory "
         f"(seed {args.seed}, a reading every {args.interval:g} s per sensor)…")
    readings, labels = simulated_history(args.days, seed=args.seed, interval=args.interval)
    kinds: dict[str, int] = {}
    for label in labels:
        kinds[label.kind] = kinds.get(label.kind, 0) + 1
    injected = ", ".join(f"{n} {kind}" for kind, n in kinds.items()) or "none"
    _say(f"backtest: {len(readings):,} readings, faults injected: {injected} "
         f"({time.perf_counter() - began:.1f} s); running the rules…")
    return _score(readings, labels, args, settings, began)


def _score(readings: object, labels: object, args: argparse.Namespace, settings: Settings,
           began: float) -> int:
    """Both backtests' end: the configured rules scored, the table printed (and its CSV)."""
    from datetime import timedelta

    from sensorlib.notebook.backtest import backtest, render
    from sensorlib.processor.loop import rules_from_settings

    table = backtest(readings, labels, {"configured": rules_from_settings(settings)},
                     tolerance=timedelta(seconds=args.tolerance))
    _say(f"backtest: done in {time.perf_counter() - began:.1f} s")
    print(render(table), end="")
    if args.csv:
        table.to_csv(args.csv, index=False)
        _say(f"backtest: the tidy table is in {args.csv}")
    return 0


def _backtest_archive(args: argparse.Namespace, settings: Settings, began: float) -> int:
    """``sensorlib backtest --start``: archived readings against the archived fault labels."""
    from datetime import timedelta

    from sensorlib.history.faults import read_faults
    from sensorlib.replay.reader import read_readings

    end = args.end or "now"
    _say(f"backtest: reading the history of {args.start} .. {end} (archive and Kafka tail)…")
    readings = read_readings(args.start, end, settings=settings)
    if readings.empty:
        _say("backtest: no readings in that period")
        return 1
    stamps = readings["timestamp"]
    labels = read_faults(settings, stamps.min(), stamps.max() + timedelta(microseconds=1))
    kinds = labels["kind"].value_counts().to_dict()
    found = ", ".join(f"{n} {kind}" for kind, n in kinds.items()) or \
        f"none (nothing archived from {settings.topic_faults}: recall cannot be scored)"
    _say(f"backtest: {len(readings):,} readings, fault labels archived: {found} "
         f"({time.perf_counter() - began:.1f} s); running the rules…")
    return _score(readings, labels, args, settings, began)


def cmd_dashboard(args: argparse.Namespace, settings: Settings) -> int:
    from sensorlib.dashboard import serve

    _check_port(args.host or settings.host, args.port or settings.dashboard_port, "dashboard",
                "--port" if args.port else "SENSORLIB_DASHBOARD_PORT")
    serve(settings.replace(dashboard_port=args.port or settings.dashboard_port,
                           host=args.host or settings.host), show=args.show)
    return 0  # not reached: serve() becomes the server


def cmd_up(args: argparse.Namespace, settings: Settings) -> int:
    from sensorlib.services.supervise import run_system

    if not settings.loopback_only and not settings.api_token:
        if not args.insecure:
            _say(f"error: SENSORLIB_HOST={settings.host} makes every service reachable from "
                 "the network, and anyone who can reach them could post readings and read "
                 "the dashboard. Set SENSORLIB_API_TOKEN to a long random secret (e.g. "
                 "`export SENSORLIB_API_TOKEN=$(python3 -c 'import secrets; "
                 "print(secrets.token_urlsafe(32))')`): writes then need it as a bearer token "
                 "and the dashboard asks for it as its password. Or bind to 127.0.0.1, or "
                 "pass --insecure to run open anyway.")
            return 2
        _say(f"warning: --insecure: bound to {settings.host} without SENSORLIB_API_TOKEN, "
             "anyone who can reach this machine may write readings and see the dashboard")
        import os

        os.environ["SENSORLIB_INSECURE"] = "1"  # the children (services, dashboard) agree
    from sensorlib.kafka.ports import check_ports

    # Before anything starts: a second `up` reached the first one's health checks,
    # printed "healthy" for each and then its own services died on the taken ports.
    check_ports(settings.host, _up_ports(settings, dashboard=not args.no_dashboard))
    if not settings.external and not _local_kafka(settings).running():
        check_ports("localhost", [(settings.kafka_port, "Kafka", "SENSORLIB_KAFKA_PORT"),
                                  (settings.controller_port, "Kafka controller",
                                   "SENSORLIB_CONTROLLER_PORT")])
    if args.observe:

        zipkin, prometheus = settings.zipkin_port, settings.prometheus_port
        check_ports("127.0.0.1", [(zipkin, "Zipkin", "SENSORLIB_ZIPKIN_PORT"),
                                  (prometheus, "Prometheus", "SENSORLIB_PROMETHEUS_PORT")])
    if args.notify:
        notify_ports = [(settings.notifier_port, "notifier /health", "SENSORLIB_NOTIFIER_PORT")]
        if not settings.alertmanager_url:
            notify_ports.append((settings.alertmanager_port, "Alertmanager",
                                 "SENSORLIB_ALERTMANAGER_PORT"))
        check_ports("127.0.0.1", notify_ports)
    if args.catalog == "postgres":
        from sensorlib.history.postgres import LocalPostgres, find_binaries

        find_binaries()  # "apt-get install postgresql" before anything starts
        if not LocalPostgres.from_settings(settings).running():
            check_ports("127.0.0.1", [(settings.db_port, "PostgreSQL", "SENSORLIB_DB_PORT")])
    return run_system(settings, dashboard=not args.no_dashboard, observe=args.observe,
                      notify=args.notify, catalog=args.catalog)


def _up_ports(settings: Settings, *, dashboard: bool) -> list[tuple[int, str, str]]:
    """The ports the services of ``sensorlib up`` listen on: (port, what, variable)."""
    ports = [(settings.producer_port, "producer API", "SENSORLIB_PRODUCER_PORT"),
             (settings.processor_port, "processor API", "SENSORLIB_PROCESSOR_PORT"),
             (settings.archiver_port, "archiver /health", "SENSORLIB_ARCHIVER_PORT")]
    if dashboard:
        ports.append((settings.dashboard_port, "dashboard", "SENSORLIB_DASHBOARD_PORT"))
    return ports


#: ``sensorlib status`` answers within this many seconds whatever is down: every check runs
#: at once, each bounded; what has not answered by then is reported as such.
