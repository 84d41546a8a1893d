"""The ``sensorlib`` command: a thin layer that parses arguments and calls the library."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence

from sensorlib.config import Settings
from sensorlib.errors import EXIT_CODES, ConfigError, SensorlibError

Handler = Callable[[argparse.Namespace, Settings], int]


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _check_port(host: str, port: int, what: str, variable: str) -> None:
    """Refuse before starting a server whose port is taken, naming who holds it."""
    from sensorlib.kafka.broker import check_ports

    check_ports(host, [(port, what, variable)])


# --------------------------------------------------------------------------- broker


def _local_kafka(settings: Settings):
    from sensorlib.kafka.broker import LocalKafka

    return LocalKafka.from_settings(settings)


def cmd_broker(args: argparse.Namespace, settings: Settings) -> int:
    from sensorlib.kafka.broker import KAFKA_VERSION, resolve_libs

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
    from sensorlib.kafka.clients import ensure_topics, wait_for_kafka

    wait_for_kafka(settings, timeout=args.timeout)
    for topic, status in ensure_topics(settings).items():
        print(f"{topic}: {status}")
    return 0


# --------------------------------------------------------------------------- streams


def cmd_simulate(args: argparse.Namespace, settings: Settings) -> int:
    from sensorlib.ingest.produce import run_simulation
    from sensorlib.kafka.clients import ensure_topics, wait_for_kafka

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
    from sensorlib.history.archiver import Archiver, can_fork_writer, compact, serve_health
    from sensorlib.kafka.clients import ensure_topics, wait_for_kafka

    if args.action == "compact":
        report = compact(settings, min_files=args.min_files, progress=_say)
        for topic, figures in report.items():
            print(f"{topic}: {figures['days_rewritten']} day(s) rewritten, "
                  f"{figures['snapshots_expired']} snapshot(s) expired, "
                  f"{figures['files_deleted']} unreferenced file(s) deleted")
        return 0
    if not args.until_caught_up:  # before waiting for Kafka: refuse a taken port at once
        _check_port(args.host or settings.host,
                    settings.archiver_port if args.port is None else args.port,
                    "archiver /health", "SENSORLIB_ARCHIVER_PORT" if args.port is None
                    else "--port")
    wait_for_kafka(settings, timeout=60)
    ensure_topics(settings)
    # A fresh process that has not used Arrow yet: the writer may be a forked child.
    writer = args.writer or ("process" if can_fork_writer() else "thread")
    archiver = Archiver(settings, batch_rows=args.batch_rows, batch_seconds=args.batch_seconds,
                        writer=writer)
    server = None
    if not args.until_caught_up:
        host = args.host or settings.host
        port = settings.archiver_port if args.port is None else args.port
        server = serve_health(archiver, host, port)
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
    from sensorlib.kafka.clients import ensure_topics, wait_for_kafka
    from sensorlib.notify.notifier import Notifier, serve_health
    from sensorlib.observe.telemetry import configure_logging, setup_tracing, shutdown_tracing
    from sensorlib.services.common import SERVICE_LOG_FORMAT

    host = args.host or settings.host
    port = settings.notifier_port if args.port is None else args.port
    _check_port(host, port, "notifier /health",
                "SENSORLIB_NOTIFIER_PORT" if args.port is None else "--port")
    configure_logging("notifier", text_format=SERVICE_LOG_FORMAT,
                      secrets=[settings.sasl_password, settings.smtp_password])
    setup_tracing("sensorlib-notifier")
    wait_for_kafka(settings, timeout=60)
    ensure_topics(settings)
    notifier = Notifier(settings, max_batch=args.max_batch)
    server = serve_health(notifier, host, port)
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
    from sensorlib.history.query import catalog_path
    from sensorlib.history.sqlshell import Session, format_table, run_prompt
    from sensorlib.replay.export import write_frame

    if not catalog_path(settings).exists():
        _say(f"note: there is no archive in {settings.warehouse} yet (start `sensorlib "
             "archive`); the views are empty")
    if args.query is None:  # the prompt: one connection for every query
        if args.out:
            raise ConfigError("--out needs a query (at the prompt: .out FILE)")
        return run_prompt(settings, tail=not args.no_tail, max_rows=args.max_rows)
    session = Session(settings, tail=not args.no_tail)
    try:
        table = session.query(args.query)
    finally:
        session.close()
    for note in session.notes:
        _say(f"note: {note}")
    tail = {view: rows for view, rows in session.tail_rows.items() if rows}
    if tail:
        _say("note: the views include what Kafka holds beyond the archive ("
             + ", ".join(f"{view}: {rows:,} rows" for view, rows in tail.items())
             + "; --no-tail for the archive alone)")
    if args.out:  # Arrow, not pandas: dates stay dates, integer sums integers
        out = write_frame(table, args.out, force=args.force)
        _say(f"{table.num_rows:,} rows → {out}")
        return 0
    print(format_table(table, args.max_rows))
    if table.num_rows > args.max_rows:
        _say(f"… {table.num_rows - args.max_rows:,} more rows ({table.num_rows:,} in all; "
             "--out writes them all)")
    return 0


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
    from sensorlib.kafka.broker import check_ports

    # Before anything starts: a second `up` reached the first one's health checks,
    # printed "healthy" for each and then its own services died on the taken ports.
    check_ports(settings.host, _up_ports(settings, dashboard=not args.no_dashboard))
    if not settings.external and not _local_kafka(settings).running():
        check_ports("localhost", [(settings.kafka_port, "Kafka", "SENSORLIB_KAFKA_PORT"),
                                  (settings.controller_port, "Kafka controller",
                                   "SENSORLIB_CONTROLLER_PORT")])
    if args.observe:
        from sensorlib.observe.viewers import viewer_ports

        zipkin, prometheus = viewer_ports()
        check_ports("127.0.0.1", [(zipkin, "Zipkin", "SENSORLIB_ZIPKIN_PORT"),
                                  (prometheus, "Prometheus", "SENSORLIB_PROMETHEUS_PORT")])
    if args.notify:
        notify_ports = [(settings.notifier_port, "notifier /health", "SENSORLIB_NOTIFIER_PORT")]
        if not settings.alertmanager_url:
            notify_ports.append((settings.alertmanager_port, "Alertmanager",
                                 "SENSORLIB_ALERTMANAGER_PORT"))
        check_ports("127.0.0.1", notify_ports)
    return run_system(settings, dashboard=not args.no_dashboard, observe=args.observe,
                      notify=args.notify)


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
STATUS_DEADLINE = 3.5


class _NoAnswer:
    """A check of ``sensorlib status`` still running at the deadline."""


def _all_bounded(checks: dict[str, Callable[[], object]], deadline: float) -> dict[str, object]:
    """Run ``checks`` at once in daemon threads; each one's result, its exception, or a
    :class:`_NoAnswer` when it had not finished by ``deadline`` (``time.monotonic()``).
    A hung call (a frozen broker, a service that accepts and never answers) is left behind
    in its daemon thread: it cannot keep the command from ending."""
    results: dict[str, object] = {}

    def run(name: str, check: Callable[[], object]) -> None:
        try:
            results[name] = check()
        except Exception as exc:  # noqa: BLE001 - reported as the check's answer
            results[name] = exc

    threads = [threading.Thread(target=run, args=item, daemon=True, name=f"status-{item[0]}")
               for item in checks.items()]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    return {name: results.get(name, _NoAnswer()) for name in checks}


def cmd_status(args: argparse.Namespace, settings: Settings) -> int:
    import httpx

    started = time.monotonic()
    deadline = started + STATUS_DEADLINE
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "::") else settings.host
    services = [("producer", f"http://{host}:{settings.producer_port}/health"),
                ("processor", f"http://{host}:{settings.processor_port}/health"),
                ("archiver", f"http://{host}:{settings.archiver_port}/health"),
                ("dashboard", f"http://{host}:{settings.dashboard_port}/live")]
    # The dashboard's page can take seconds to render under load: ask Panel's liveness.
    probes = {name: url.replace("/live", "/liveness") if name == "dashboard" else url
              for name, url in services}
    groups = [(settings.processor_group, settings.topic_readings),
              (settings.dashboard_readings_group, settings.topic_readings),
              (settings.dashboard_alerts_group, settings.topic_alerts),
              (settings.archiver_group, settings.topic_readings),
              (settings.archiver_group, settings.topic_alerts)]
    http_timeout = httpx.Timeout(STATUS_DEADLINE - 0.5)

    def reachable() -> bool:
        from sensorlib.kafka.clients import kafka_reachable

        return kafka_reachable(settings)

    def get(url: str) -> Callable[[], object]:
        return lambda: httpx.get(url, timeout=http_timeout)

    checks: dict[str, Callable[[], object]] = {"kafka": reachable}
    checks.update({name: get(probes[name]) for name, _ in services})
    checks["lags"] = lambda: _group_lags(settings, groups)
    checks.update({f"viewer {name}": get(health) for name, (_, health) in _viewers().items()})
    checks["archive"] = lambda: _archive_status(settings)
    results = _all_bounded(checks, deadline)
    doc = _status_document(settings, services, groups, results)
    if args.json:
        import json

        print(json.dumps(doc, indent=2, default=str))
    else:
        _print_status(doc)
    return 0 if doc["healthy"] else 1


def _status_document(settings: Settings, services: list[tuple[str, str]],
                     groups: list[tuple[str, str]], results: dict[str, object]
                     ) -> dict[str, object]:
    """What ``sensorlib status`` found, as one JSON-ready object (``--json`` prints it; the
    text form prints the same content)."""
    import httpx

    waited = f"no answer within {STATUS_DEADLINE:g}s"
    lags = results["lags"]
    kafka = results["kafka"]
    if kafka is True and isinstance(lags, _NoAnswer):
        state = f"NOT ANSWERING (TCP connects; {waited}: frozen or overloaded?)"
    elif kafka is True:
        state = "reachable"
    elif isinstance(kafka, _NoAnswer):
        state = f"UNREACHABLE ({waited})"
    else:
        state = "UNREACHABLE"
    healthy = state == "reachable"
    doc: dict[str, object] = {
        "kafka": {"bootstrapServers": settings.bootstrap_servers, "status": state,
                  "reachable": state == "reachable"}}
    rows = []
    for name, url in services:
        answer = results[name]
        why: list[str] = []
        if isinstance(answer, httpx.Response):
            ok = answer.status_code == 200
            status = "healthy" if ok else f"unhealthy ({answer.status_code})"
            why = [] if ok else _health_reasons(answer)
        elif isinstance(answer, httpx.ConnectError):
            status = "not running"
        elif isinstance(answer, _NoAnswer | httpx.TimeoutException):
            status = f"NOT ANSWERING ({waited})"
        else:
            status = f"not running ({type(answer).__name__})"
        healthy &= status == "healthy"
        rows.append({"name": name, "url": url, "status": status,
                     "healthy": status == "healthy", "problems": why})
    doc["services"] = rows
    viewers = []
    for name, (url, _) in _viewers().items():  # optional: never a failure
        answer = results[f"viewer {name}"]
        if isinstance(answer, httpx.Response):
            status = "running" if answer.status_code == 200 else "starting"
        elif isinstance(answer, _NoAnswer | httpx.TimeoutException):
            status = f"not answering ({waited})"
        else:
            status = "not running (sensorlib up --observe starts it)"
        viewers.append({"name": name, "url": url, "status": status})
    doc["viewers"] = viewers
    lag_rows: list[dict[str, object]] = []
    if kafka is True:
        for group, topic in groups:
            answer = lags if not isinstance(lags, dict) else lags[(group, topic)]
            row: dict[str, object] = {"group": group, "topic": topic}
            if isinstance(answer, _NoAnswer):
                row["error"] = f"Kafka gave {waited}"
            elif isinstance(answer, Exception):
                row["error"] = str(answer)
            else:
                assert isinstance(answer, dict)
                known = [int(p["lag"]) for p in answer.values() if p["lag"] is not None]
                # None: the group never committed any partition (lag unknown, not the topic)
                row["lag"] = sum(known) if known else None
                row["neverCommitted"] = [p for p, v in answer.items() if v["lag"] is None]
                row["partitions"] = {str(p): v for p, v in answer.items()}
            lag_rows.append(row)
    doc["consumerGroups"] = lag_rows
    archive = results["archive"]
    if isinstance(archive, dict):
        doc["archive"] = archive
    elif isinstance(archive, _NoAnswer):
        doc["archive"] = {"warehouse": str(settings.warehouse),
                          "error": f"{waited} (the catalog may be locked)"}
        healthy = False
    else:
        doc["archive"] = {"warehouse": str(settings.warehouse),
                          "error": f"cannot be read ({archive})"}
        healthy = False
    doc["healthy"] = healthy
    return doc


def _print_status(doc: dict) -> None:
    """The text form of ``sensorlib status``."""
    kafka = doc["kafka"]
    print(f"kafka      {kafka['bootstrapServers']}: {kafka['status']}")
    for row in doc["services"]:
        print(f"{row['name']:<10} {row['url']}: {row['status']}")
        for reason in row["problems"]:
            print(f"{'':<10} - {reason}")
    for row in doc["viewers"]:
        print(f"{row['name']:<10} {row['url']}: {row['status']}")
    if kafka["reachable"] or doc["consumerGroups"]:
        print("consumer group lag:")
    for row in doc["consumerGroups"]:
        group, topic = row["group"], row["topic"]
        if "error" in row:
            if str(row["error"]).startswith("Kafka gave"):
                print(f"  {group:<28} {topic:<20} {row['error']}")
            else:
                print(f"  {group}: {row['error']}")
            continue
        parts = " ".join(f"p{p}={'never committed' if v['lag'] is None else v['lag']}"
                         for p, v in row["partitions"].items())
        if row["lag"] is None:
            print(f"  {group:<28} {topic:<20} never committed")
        else:
            print(f"  {group:<28} {topic:<20} lag {row['lag']:>8,}  ({parts})")
    archive = doc["archive"]
    if "error" in archive:
        print(f"archive    {archive['warehouse']}: {archive['error']}")
    elif archive["tables"] is None:
        print(f"archive    {archive['warehouse']}: none yet (start `sensorlib archive`)")
    else:
        print(f"archive    {archive['warehouse']}:")
        for row in archive["tables"]:
            if not row["exists"]:
                print(f"  {row['table']:<36} not created yet")
                continue
            when = row["lastCommit"] or "never"
            print(f"  {row['table']:<36} {row['rows']:>12,} rows  {row['files']:>5} files  "
                  f"{row['bytes'] / 1e6:8.1f} MB  last commit {when}")


def _group_lags(settings: Settings, pairs: list[tuple[str, str]]
                ) -> dict[tuple[str, str], dict[int, dict[str, int | None]] | Exception]:
    """:func:`sensorlib.kafka.clients.group_lag` of each (group, topic) pair with one consumer
    and one admin client for all (ten clients at once took seconds on a busy machine)."""
    from kafka import TopicPartition
    from kafka.errors import KafkaError

    from sensorlib.kafka.clients import make_admin, make_consumer

    consumer = make_consumer(settings, client_id="sensorlib-status")
    admin = make_admin(settings, client_id="sensorlib-status")
    try:
        parts = {topic: [TopicPartition(topic, p)
                         for p in sorted(consumer.partitions_for_topic(topic) or [])]
                 for topic in sorted({t for _, t in pairs})}
        every = [tp for tps in parts.values() for tp in tps]
        ends = consumer.end_offsets(every) if every else {}
        out: dict[tuple[str, str], dict[int, dict[str, int | None]] | Exception] = {}
        for group in dict.fromkeys(g for g, _ in pairs):
            topics = [t for g, t in pairs if g == group]
            try:
                committed = admin.list_group_offsets(
                    {group: [tp for t in topics for tp in parts[t]]}).get(group, {})
            except KafkaError:
                committed = {}
            for topic in topics:
                lag: dict[int, dict[str, int | None]] = {}
                for tp in parts[topic]:
                    meta = committed.get(tp)
                    done = meta.offset if meta is not None and meta.offset >= 0 else None
                    end = ends.get(tp, 0)
                    lag[tp.partition] = {"committed": done, "end": end,
                                         "lag": None if done is None else max(0, end - done)}
                out[(group, topic)] = lag
        return out
    finally:
        consumer.close()
        admin.close()


def _viewers() -> dict[str, tuple[str, str]]:
    """The trace and metrics viewers of ``sensorlib up --observe``: name -> (url, health)."""
    from sensorlib.observe.viewers import viewer_urls

    return viewer_urls()


def _health_reasons(answer: object) -> list[str]:
    """The reasons a service's ``/health`` gives for being unhealthy (same words)."""
    try:
        body = answer.json()  # type: ignore[attr-defined]
    except ValueError:
        return []
    if not isinstance(body, dict):
        return []
    reasons = [str(p) for p in body.get("problems") or []]
    if body.get("lastError") and not any(str(body["lastError"]) in r for r in reasons):
        reasons.append(f"last error: {body['lastError']}")
    return reasons


def _archive_status(settings: Settings) -> dict[str, object]:
    """Rows and last commit of each archive table (``sensorlib status``); ``tables`` is
    None when there is no archive yet."""
    from sensorlib.history.query import catalog_path

    out: dict[str, object] = {"warehouse": str(settings.warehouse), "tables": None}
    if not catalog_path(settings).exists():
        return out
    from sensorlib.history.query import table_status

    tables = []
    for row in table_status(settings):
        last = row.get("last_snapshot")
        tables.append({"table": row["table"], "exists": bool(row["exists"]),
                       "rows": row.get("rows"), "files": row.get("files"),
                       "bytes": row.get("bytes"),
                       "lastCommit": last.strftime("%Y-%m-%d %H:%M:%S UTC") if last else None})
    out["tables"] = tables
    return out


# --------------------------------------------------------------------------- config


def _config_rows(settings: Settings) -> list[dict[str, str]]:
    """Every variable of :data:`sensorlib.config.VARIABLES`: its value in force (secrets as
    ``***``) and where it came from (environment, config file, default)."""
    import os

    from sensorlib.config import SECRET_VARIABLES, VARIABLES
    from sensorlib.ingest.bridge import IngestSettings
    from sensorlib.observe.viewers import viewer_ports

    effective = settings.to_env()
    effective["KAFKA_BOOTSTRAP_SERVERS"] = settings.bootstrap_servers
    effective["SENSORLIB_WAREHOUSE"] = str(settings.warehouse)
    effective["SENSORLIB_ALLOWED_HOSTS"] = ",".join(settings.hosts())
    limits = IngestSettings.from_env()
    for name, value in (("MAX_IN_FLIGHT", limits.max_in_flight), ("MAX_BATCH", limits.max_batch),
                        ("MAX_BATCH_BYTES", limits.max_batch_bytes),
                        ("ACK_TIMEOUT", f"{limits.ack_timeout:g}s"),
                        ("RETRY_AFTER", limits.retry_after),
                        ("IDEMPOTENCY_TTL", f"{limits.idempotency_ttl:g}s"),
                        ("IDEMPOTENCY_KEYS", limits.idempotency_keys)):
        effective[f"SENSORLIB_{name}"] = str(value)
    zipkin, prometheus = viewer_ports()
    effective["SENSORLIB_ZIPKIN_PORT"], effective["SENSORLIB_PROMETHEUS_PORT"] = (
        str(zipkin), str(prometheus))
    unset = {"SENSORLIB_SEED": "(random)", "KAFKA_HOME": f"(unset: jars in {settings.cache_dir})",
             "SENSORLIB_STALE_AFTER": "(3 × SENSORLIB_INTERVAL, at least 10 s)",
             "SENSORLIB_METRICS_URLS": "(each service on SENSORLIB_HOST and its port)",
             "SENSORLIB_CORS_ORIGINS": "(none: only the service's own page)",
             "SENSORLIB_LOG_FORMAT": "text", "SENSORLIB_NOTEBOOKS": "(the report notebook shipped in the package)"}
    path = _CONFIG_PATH[0]
    rows = []
    known = set(VARIABLES)
    names = list(VARIABLES) + sorted(
        n for n in {*os.environ, *_FROM_FILE}
        if n.startswith("SENSORLIB_") and n not in known and n != "SENSORLIB_CONFIG")
    for name in names:
        raw = (os.environ.get(name) or "").strip()
        if name in _FROM_FILE:
            source = f"config file {path}"
        elif raw:
            source = "environment"
        elif name == "KAFKA_BOOTSTRAP_SERVERS" and settings.external:
            source = "from ConnectionStrings__messaging"
        elif name == "KAFKA_BOOTSTRAP_SERVERS" and settings.kafka_port != 9092:
            source = "from SENSORLIB_KAFKA_PORT"
        else:
            source = "default"
        value = effective.get(name) or raw or unset.get(name, "(unset)")
        if name in SECRET_VARIABLES or "PASSWORD" in name or "TOKEN" in name:
            value = "***" if raw or effective.get(name) else "(unset)"
        row = {"name": name, "value": value, "source": source}
        if name not in known:
            row["note"] = "not a setting this version reads (a typo?)"
        rows.append(row)
    return rows


def cmd_config(args: argparse.Namespace, settings: Settings) -> int:
    rows = _config_rows(settings)
    path = _CONFIG_PATH[0]
    if args.json:
        import json

        print(json.dumps({"configFile": None if path is None else str(path), "settings": rows},
                         indent=2))
        return 0
    from sensorlib.config import CONFIG_FILE

    print(f"config file: {path}" if path is not None else
          f"config file: none (./{CONFIG_FILE} or $SENSORLIB_CONFIG; the environment wins "
          "over it)")
    width = max(len(r["name"]) for r in rows)
    for row in rows:
        note = f"  ! {row['note']}" if "note" in row else ""
        print(f"{row['name']:<{width}}  {row['value']:<32}  {row['source']}{note}")
    return 0


# --------------------------------------------------------------------------- Kafka's tools

#: ``sensorlib kafka TOOL``: Kafka's tool classes (in the kafka-tools jar).
KAFKA_TOOLS: dict[str, str] = {
    "console-consumer": "org.apache.kafka.tools.consumer.ConsoleConsumer",
    "console-producer": "org.apache.kafka.tools.ConsoleProducer",
    "consumer-groups": "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand",
    "topics": "org.apache.kafka.tools.TopicCommand",
    "configs": "org.apache.kafka.tools.ConfigCommand",
    "get-offsets": "org.apache.kafka.tools.GetOffsetShell",
}
#: The tools' options naming a client config file (Kafka 4: --command-config; the
#: console tools' older names still work).
_CONFIG_OPTIONS = ("--command-config", "--consumer.config", "--producer.config")


def cmd_kafka(args: argparse.Namespace, settings: Settings) -> int:
    import os
    import subprocess
    import tempfile

    from sensorlib.kafka.broker import kafka_tool_command

    main_class = KAFKA_TOOLS[args.tool]
    extra = list(args.tool_args)
    if extra[:1] == ["--"]:
        extra = extra[1:]
    given = any(a == "--bootstrap-server" or a.startswith("--bootstrap-server=") for a in extra)
    asks_help = any(a in ("-h", "--help") for a in extra)
    if not given and not asks_help:
        extra = ["--bootstrap-server", settings.bootstrap_servers, *extra]
    with tempfile.TemporaryDirectory(prefix="sensorlib-kafka-") as folder:
        properties = _client_properties(settings)
        if properties and not asks_help and not any(a.startswith(_CONFIG_OPTIONS) for a in extra):
            path = f"{folder}/client.properties"
            with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w",
                      encoding="utf-8") as handle:  # it may hold the SASL password
                handle.write(properties)
            extra = ["--command-config", path, *extra]
        argv = kafka_tool_command(settings, main_class, extra, progress=_say)
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the tool's
        try:
            return subprocess.run(argv, check=False).returncode
        finally:
            signal.signal(signal.SIGINT, previous)


def _client_properties(settings: Settings) -> str:
    """Kafka client properties for the settings' SASL/TLS options ('' for PLAINTEXT)."""
    if settings.security_protocol == "PLAINTEXT" and not settings.ssl_cafile:
        return ""
    lines = [f"security.protocol={settings.security_protocol}"]
    if settings.sasl_mechanism:
        module = ("org.apache.kafka.common.security.scram.ScramLoginModule"
                  if settings.sasl_mechanism.upper().startswith("SCRAM")
                  else "org.apache.kafka.common.security.plain.PlainLoginModule")
        user = (settings.sasl_username or "").replace("\\", "\\\\").replace('"', '\\"')
        password = (settings.sasl_password or "").replace("\\", "\\\\").replace('"', '\\"')
        lines += [f"sasl.mechanism={settings.sasl_mechanism}",
                  f'sasl.jaas.config={module} required username="{user}" password="{password}";']
    if settings.ssl_cafile:
        lines += ["ssl.truststore.type=PEM", f"ssl.truststore.location={settings.ssl_cafile}"]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- completion


def cmd_completion(args: argparse.Namespace, settings: Settings) -> int:
    script = completion_script(build_parser(settings))
    if args.shell == "zsh":
        script = ("# zsh completion for sensorlib: bash's, through zsh's bashcompinit\n"
                  "autoload -U +X compinit && compinit\n"
                  "autoload -U +X bashcompinit && bashcompinit\n" + script)
    print(script, end="")
    return 0


def completion_script(parser: argparse.ArgumentParser) -> str:
    """A bash completion script for ``parser``: commands, each command's options, the
    choices of an option or positional argument, file names for other values."""
    def options(p: argparse.ArgumentParser) -> tuple[list[str], dict[str, list[str]], list[str]]:
        words: list[str] = []
        choices: dict[str, list[str]] = {}
        positional: list[str] = []
        for action in p._actions:
            if isinstance(action, argparse._SubParsersAction):
                continue
            if action.option_strings:
                words += action.option_strings
                if action.choices:
                    for flag in action.option_strings:
                        choices[flag] = [str(c) for c in action.choices]
            elif action.choices:
                positional += [str(c) for c in action.choices]
        return words, choices, positional

    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    top, _, _ = options(parser)
    lines = ["# bash completion for sensorlib (generated by `sensorlib completion bash`)",
             "_sensorlib() {",
             '    local cur="${COMP_WORDS[COMP_CWORD]}" prev="${COMP_WORDS[COMP_CWORD-1]}"',
             '    local cmd="${COMP_WORDS[1]}"',
             '    if [ "$COMP_CWORD" -eq 1 ]; then',
             f'        COMPREPLY=( $(compgen -W "{" ".join([*sub.choices, *top])}" -- "$cur") )',
             "        return",
             "    fi",
             '    case "$cmd" in']
    for name, p in sub.choices.items():
        words, choices, positional = options(p)
        lines.append(f"        {name})")
        if choices:
            lines.append('            case "$prev" in')
            for flag, values in choices.items():
                lines.append(f'                {flag}) COMPREPLY=( $(compgen -W "{" ".join(values)}"'
                             ' -- "$cur") ); return;;')
            lines.append("            esac")
        if name == "kafka":  # after the tool, its own options: leave them to the tool
            lines.append('            [ "$COMP_CWORD" -gt 2 ] && return')
        lines.append(f'            COMPREPLY=( $(compgen -W "{" ".join([*positional, *words])}"'
                     ' -- "$cur") );;')
    lines += ["    esac", "}", "complete -o default -F _sensorlib sensorlib", ""]
    return "\n".join(lines)


# --------------------------------------------------------------------------- parser


#: More processor workers than this is a typo, not a deployment (each is a process).
MAX_WORKERS = 64


def _workers(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, not {text!r}") from None
    if not 1 <= value <= MAX_WORKERS:
        raise argparse.ArgumentTypeError(f"must be between 1 and {MAX_WORKERS}, not {value}")
    return value


def _service_options(parser: argparse.ArgumentParser, settings: Settings, port: int,
                     variable: str) -> None:
    parser.add_argument("--host", help=f"address to bind (default: {settings.host}, from "
                                       "SENSORLIB_HOST)")
    parser.add_argument("--port", type=int,
                        help=f"port to listen on (default: {port}, from {variable})")


def _period_options(parser: argparse.ArgumentParser, *, start: str | None, end: str) -> None:
    """``--start``, ``--end`` (event time, end exclusive) and ``--sensor``."""
    parser.add_argument("--start", default=start,
                        help="ISO-8601 (naive = UTC), 'today', 'yesterday', '1h ago' or =-1h"
                             + (f" (default: {start})" if start else ""))
    parser.add_argument("--end", default=end,
                        help=f"exclusive; same forms as --start (default: {end})")
    parser.add_argument("--sensor", action="append", metavar="ID",
                        help="keep only this sensor (repeatable)")


def exit_codes_text() -> str:
    """The exit-code table of ``sensorlib --help`` (and the README)."""
    return "exit codes:\n" + "\n".join(f"  {code:<4} {meaning}"
                                         for code, meaning in EXIT_CODES.items())


def _settings_for_help() -> Settings:
    """The settings in force, for the defaults shown by ``--help`` (the built-in ones when
    a setting is unusable: the command itself then says which)."""
    try:
        return Settings.from_env()
    except SensorlibError:
        return Settings()


def build_parser(settings: Settings | None = None) -> argparse.ArgumentParser:
    """The ``sensorlib`` argument parser; ``--help`` shows the defaults of ``settings``
    (default: the environment and config file in force)."""
    settings = _settings_for_help() if settings is None else settings
    parser = argparse.ArgumentParser(
        prog="sensorlib",
        description="Watch, analyse and replay IoT sensor event streams on Apache Kafka. "
                    "Settings come from environment variables or a sensorlib.toml "
                    "(`sensorlib config` shows them and where each came from).",
        epilog=exit_codes_text(), formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    broker = sub.add_parser("broker", help="run a local Apache Kafka (KRaft) without Docker")
    broker.add_argument("action", choices=["start", "stop", "status", "fetch"])
    broker.add_argument("--detach", "-d", action="store_true", help="start in the background")
    broker.add_argument("--timeout", type=float, default=120.0,
                        help="seconds to wait for start (default: %(default)g)")
    broker.set_defaults(handler=cmd_broker)

    topics = sub.add_parser("topics", help="create the project's topics (idempotent)")
    topics.add_argument("--timeout", type=float, default=30.0,
                        help="seconds to wait for Kafka (default: %(default)g)")
    topics.set_defaults(handler=cmd_topics)

    simulate = sub.add_parser("simulate", help="publish the simulated fleet to Kafka")
    simulate.add_argument("--rate", type=float,
                          help="readings per second per sensor (default: "
                               f"{1 / settings.interval:g}, one every SENSORLIB_INTERVAL="
                               f"{settings.interval:g}s)")
    simulate.add_argument("--duration", type=float, help="seconds to run (simulated seconds with --fast)")
    simulate.add_argument("--count", type=int, help="stop after this many readings")
    simulate.add_argument("--seed", type=int, help="seed for a reproducible fleet")
    simulate.add_argument("--fast", dest="realtime", action="store_false",
                          help="no pacing: advance event time and publish as fast as Kafka takes it")
    simulate.add_argument("--start", help="--fast: event time of the first reading (ISO-8601 or "
                          "-7d); default: so that the last one is now")
    simulate.add_argument("--end", help="--fast: event time of the last reading (default: now)")
    simulate.add_argument("--quiet", "-q", action="store_true", help="don't print each reading")
    simulate.set_defaults(handler=cmd_simulate)

    producer = sub.add_parser("producer", help="the producer service (simulator + REST API, :8081)")
    _service_options(producer, settings, settings.producer_port, "SENSORLIB_PRODUCER_PORT")
    producer.add_argument("--rate", type=float,
                          help=f"readings per second per sensor (default: "
                               f"{1 / settings.interval:g}, from SENSORLIB_INTERVAL)")
    producer.add_argument("--no-simulate", action="store_true", help="only the REST API")
    producer.set_defaults(handler=cmd_producer)

    processor = sub.add_parser("processor", help="the processor service (windows, rules, alerts, :8082)")
    _service_options(processor, settings, settings.processor_port, "SENSORLIB_PROCESSOR_PORT")
    processor.add_argument("--instance", default="1",
                           help="instance name, unique within the consumer group (default 1)")
    processor.add_argument("--workers", type=_workers, default=1, metavar="N",
                           help="N processor processes in the group, one API in front "
                                "(use N cores; the readings topic needs >= N partitions)")
    processor.set_defaults(handler=cmd_processor)

    replay = sub.add_parser("replay", help="replay a period of a topic into a Parquet or CSV file",
                       description="Read readings (or alerts) with start <= timestamp < end "
                                   "without a consumer group and write them to a file.")
    _period_options(replay, start=None, end="now")
    replay.add_argument("--alerts", action="store_true", help="replay the alerts topic instead")
    replay.add_argument("--from-beginning", action="store_true",
                   help="Kafka: scan the topic from its start instead of seeking near --start")
    replay.add_argument("--source", choices=["auto", "archive", "kafka"], default="auto",
                        help="auto: the archive plus Kafka's not yet archived tail (Kafka alone "
                             "without an archive); archive: the archive only; kafka: Kafka only")
    replay.add_argument("--out", required=True,
                        help="output file: .parquet or .csv (CSV cells that would be spreadsheet "
                             "formulas are written as text: a ' is put before = + - @)")
    replay.add_argument("--force", action="store_true",
                        help="replace --out if it exists (a symbolic link is never written through)")
    replay.set_defaults(handler=cmd_replay)

    report = sub.add_parser("report", help="run the report notebook for a period (papermill → HTML)",
                       description="Execute the report notebook (notebooks/04_report.ipynb, "
                                   "shipped in the package; SENSORLIB_NOTEBOOKS for your own) "
                                   "for start <= t < end and write the executed notebook and "
                                   "an HTML export.")
    _period_options(report, start="yesterday", end="today")
    report.add_argument("--out", default="reports/", help="output folder (default: reports/)")
    report.add_argument("--keep", type=int, metavar="N",
                        help="keep only the N newest reports (by period) in --out; "
                             "index.html lists what is there (default: keep all)")
    report.add_argument("--timeout", type=float, default=600.0,
                        help="seconds per cell (default: %(default)g)")
    report.epilog = exit_codes_text()
    report.formatter_class = argparse.RawDescriptionHelpFormatter
    report.set_defaults(handler=cmd_report)

    archive = sub.add_parser(
        "archive", help="archive both topics into Apache Iceberg tables (service, :8083)",
        description="Append sensor-readings and sensor-alerts to Iceberg tables in "
                    "SENSORLIB_WAREHOUSE, exactly once, partitioned by event day. "
                    "`sensorlib archive compact` rewrites small files.")
    archive.add_argument("action", nargs="?", choices=["run", "compact"], default="run")
    archive.add_argument("--host", help=f"address of /health (default: {settings.host}, "
                                        "from SENSORLIB_HOST)")
    archive.add_argument("--port", type=int,
                         help=f"port of /health (default: {settings.archiver_port}, from "
                              "SENSORLIB_ARCHIVER_PORT)")
    archive.add_argument("--batch-rows", type=int, default=100_000,
                         help="records per table commit at most (default 100,000)")
    archive.add_argument("--batch-seconds", type=float, default=30.0,
                         help="seconds a record may wait for its commit (default 30)")
    archive.add_argument("--writer", choices=["process", "thread"],
                         help="where decoding and commits run (default: a process on Linux)")
    archive.add_argument("--until-caught-up", action="store_true",
                         help="archive what the topics hold now, then exit (no /health)")
    archive.add_argument("--min-files", type=int, default=4,
                         help="compact: rewrite an event day that has at least this many files")
    archive.set_defaults(handler=cmd_archive)

    notify = sub.add_parser(
        "notify", help="send alerts to Prometheus Alertmanager (service, :8084)",
        description="Consume the alerts topic (group notification-group) and post the alerts "
                    "to Alertmanager's v2 API, committing offsets only once it accepted them. "
                    "Alertmanager groups, silences and delivers them (webhook, Slack, e-mail).")
    notify.add_argument("--host", help=f"address of /health (default: {settings.host})")
    notify.add_argument("--port", type=int,
                        help=f"port of /health and /metrics (default: {settings.notifier_port}, "
                             "from SENSORLIB_NOTIFIER_PORT)")
    notify.add_argument("--max-batch", type=int, default=5000,
                        help="alerts per POST to Alertmanager (default 5000)")
    notify.set_defaults(handler=cmd_notify)

    sql = sub.add_parser("sql", help="query the archive with SQL (DuckDB; views readings, alerts)",
                         description="Run a DuckDB SQL query over the archive's tables, "
                                     "e.g. sensorlib sql \"select sensor_id, avg(temperature) "
                                     "from readings group by 1\"")
    sql.add_argument("query", nargs="?",
                     help="the SQL (views: readings, alerts, dead_letters); none: an "
                          "interactive prompt on one connection (.help there; piped "
                          "input: one query per line)")
    sql.add_argument("--out", help="write the result to a .parquet or .csv file instead (CSV "
                                   "cells that would be spreadsheet formulas are written as text)")
    sql.add_argument("--force", action="store_true", help="replace --out if it exists")
    sql.add_argument("--max-rows", type=int, default=50, help="rows printed (default 50)")
    sql.add_argument("--no-tail", action="store_true",
                     help="the archive alone (default: the views also hold what Kafka has "
                          "beyond the archive, the minutes the archiver has not written yet)")
    sql.set_defaults(handler=cmd_sql)

    up = sub.add_parser("up", help="run the whole system: broker, topics, producer, processor, "
                                   "archiver, dashboard")
    up.add_argument("--no-dashboard", action="store_true")
    up.add_argument("--insecure", action="store_true",
                    help="allow SENSORLIB_HOST beyond loopback without SENSORLIB_API_TOKEN "
                         "(anyone on the network may then write and see the dashboard)")
    zipkin_port, prometheus_port = _viewer_ports_for_help()
    up.add_argument("--observe", action="store_true",
                    help="also start the local viewers: Zipkin (traces, on "
                         f"127.0.0.1:{zipkin_port}, SENSORLIB_ZIPKIN_PORT) and Prometheus "
                         f"when installed (metrics, on 127.0.0.1:{prometheus_port}, "
                         "SENSORLIB_PROMETHEUS_PORT)")
    up.add_argument("--notify", action="store_true",
                    help="also send alerts to people: Alertmanager (on 127.0.0.1:"
                         f"{settings.alertmanager_port}, SENSORLIB_ALERTMANAGER_PORT; none with "
                         "SENSORLIB_ALERTMANAGER_URL) and `sensorlib notify`")
    up.set_defaults(handler=cmd_up)

    status = sub.add_parser("status", help="health of each service and lag of each consumer group",
                            description="Exit code 0 when Kafka and every service are healthy, "
                                        "1 otherwise.")
    status.add_argument("--json", action="store_true",
                        help="print the same content as one JSON object (for scripts)")
    status.set_defaults(handler=cmd_status)

    dashboard = sub.add_parser("dashboard", help="the live dashboard (Panel, :5006/live)")
    _service_options(dashboard, settings, settings.dashboard_port, "SENSORLIB_DASHBOARD_PORT")
    dashboard.add_argument("--show", action="store_true", help="open it in a browser")
    dashboard.set_defaults(handler=cmd_dashboard)

    config = sub.add_parser(
        "config", help="the effective settings and where each came from",
        description="Every setting sensorlib reads, its value in force and where it came from: "
                    "the environment, the config file (./sensorlib.toml or $SENSORLIB_CONFIG; "
                    "keys are the variables' names, in upper or lower case, with or without "
                    "SENSORLIB_; the environment wins) or the default. Secrets show as ***.")
    config.add_argument("--json", action="store_true", help="print one JSON object")
    config.set_defaults(handler=cmd_config)

    kafka = sub.add_parser(
        "kafka", help="run one of Kafka's own tools (console consumer, consumer groups, topics …)",
        description="Run an Apache Kafka command-line tool from the fetched jars (the Maven "
                    "fetch has no kafka-*.sh scripts). --bootstrap-server is filled in from "
                    f"the settings ({settings.bootstrap_servers}) unless given; with SASL/TLS "
                    "settings a client config file is passed too. Everything after TOOL goes "
                    "to the tool: `sensorlib kafka consumer-groups --list`, `sensorlib kafka "
                    "console-consumer --topic sensor-alerts --from-beginning`, `sensorlib "
                    "kafka topics --describe`, `sensorlib kafka TOOL --help`.",
        epilog="tools:\n" + "\n".join(f"  {name:<18} {cls}" for name, cls in
                                       KAFKA_TOOLS.items()),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    kafka.add_argument("tool", choices=sorted(KAFKA_TOOLS), metavar="TOOL",
                       help="one of: " + ", ".join(KAFKA_TOOLS))
    kafka.add_argument("tool_args", nargs=argparse.REMAINDER, metavar="ARG",
                       help="the tool's own options")
    kafka.set_defaults(handler=cmd_kafka)

    completion = sub.add_parser(
        "completion", help="print a shell completion script (bash or zsh)",
        description="Print a completion script generated from this parser. Bash: "
                    "`sensorlib completion bash > ~/.local/share/bash-completion/completions/"
                    "sensorlib` (or `source <(sensorlib completion bash)` in ~/.bashrc). Zsh: "
                    "`source <(sensorlib completion zsh)` in ~/.zshrc.")
    completion.add_argument("shell", choices=["bash", "zsh"])
    completion.set_defaults(handler=cmd_completion)
    return parser


def _viewer_ports_for_help() -> tuple[int, int]:
    from sensorlib.observe.viewers import PROMETHEUS_PORT, ZIPKIN_PORT, viewer_ports

    try:
        return viewer_ports()
    except SensorlibError:
        return ZIPKIN_PORT, PROMETHEUS_PORT


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``sensorlib`` console script; its exit codes are :data:`EXIT_CODES`
    (each error class's ``exit_code``)."""
    from sensorlib.observe.telemetry import quiet_kafka_noise

    quiet_kafka_noise()  # kafka-python's retried, transient errors are not ERRORs here either
    try:
        _apply_config_file()
    except ConfigError as exc:
        if not _help_asked(argv):
            _say(f"error: {exc}")
            return exc.exit_code
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.version:
        from sensorlib import __version__

        print(__version__)
        return 0
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    try:
        settings = Settings.from_env()
        return int(args.handler(args, settings) or 0)
    except SensorlibError as exc:
        _say(f"error: {exc}")
        return exc.exit_code
    except KeyboardInterrupt:
        return 130


def _help_asked(argv: Sequence[str] | None) -> bool:
    words = sys.argv[1:] if argv is None else list(argv)
    return any(w in ("-h", "--help", "--version") for w in words)


#: Variables :func:`_apply_config_file` took from the config file (not in the environment),
#: and the file: ``sensorlib config`` names them as coming from it.
_FROM_FILE: dict[str, str] = {}
_CONFIG_PATH: list[object] = [None]


def _apply_config_file() -> None:
    """Put the config file's settings into this process's environment where the
    environment has none, so that every reader (the ingest limits, the viewers' ports,
    the log format, services and notebooks started from here) sees them."""
    import os

    from sensorlib.config import config_file_path, read_config_file

    path = config_file_path()
    _CONFIG_PATH[0] = path
    if path is None:
        return
    for name, value in read_config_file(path).items():
        if not (os.environ.get(name) or "").strip():
            os.environ[name] = value
            _FROM_FILE[name] = value


if __name__ == "__main__":
    sys.exit(main())
