"""The argument parser: every command, its options and its help."""

from __future__ import annotations

import argparse

from sensorlib.cli.commands import (
    cmd_archive,
    cmd_backtest,
    cmd_broker,
    cmd_dashboard,
    cmd_notify,
    cmd_processor,
    cmd_producer,
    cmd_replay,
    cmd_report,
    cmd_simulate,
    cmd_spark_sql,
    cmd_sql,
    cmd_topics,
    cmd_up,
)
from sensorlib.cli.db import cmd_db
from sensorlib.cli.rules import add_rules_parser
from sensorlib.cli.status import cmd_status
from sensorlib.cli.tools import KAFKA_TOOLS, cmd_completion, cmd_config, cmd_kafka
from sensorlib.config import Settings
from sensorlib.errors import EXIT_CODES, SensorlibError
from sensorlib.history.queries import NAMED_QUERIES

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

    db = sub.add_parser(
        "db", help="run a local PostgreSQL for the archive's catalog (Debian's postgresql)",
        description="Start, stop or describe sensorlib's own PostgreSQL (127.0.0.1:"
                    f"{settings.db_port}, SENSORLIB_DB_PORT; data under $SENSORLIB_DATA/"
                    "postgres) from the postgresql package's programs: no root, no systemd. "
                    "`start` is idempotent, creates the catalog's database and prints its "
                    "SQLAlchemy URL for SENSORLIB_CATALOG_URI (`sensorlib up --catalog "
                    "postgres` does it all).")
    db.add_argument("action", choices=["start", "stop", "status"])
    db.add_argument("--timeout", type=float, default=60.0,
                    help="seconds to wait for start or stop (default: %(default)g)")
    db.set_defaults(handler=cmd_db)

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

    backtest = sub.add_parser(
        "backtest", help="score the rules against a simulated fleet's known faults (no Kafka)",
        description="Simulate the reference fleet in memory, with the faults it injects "
                    "recorded (spike, stuck, silent, drift), run the configured rules over it "
                    "offline (the live processor's alerts) and print, per rule, recall and "
                    "detection delay per fault kind, precision and false alerts per sensor "
                    "per day.")
    backtest.add_argument("--days", type=float, default=7.0,
                          help="simulated days (default: %(default)g)")
    backtest.add_argument("--seed", type=int, default=0,
                          help="seed of the fleet (default: %(default)s)")
    backtest.add_argument("--interval", type=float, default=10.0,
                          help="seconds between a sensor's readings (default: %(default)g)")
    backtest.add_argument("--tolerance", type=float, default=60.0,
                          help="seconds after a fault's end an alert still detects it "
                               "(default: %(default)g)")
    backtest.add_argument("--csv", metavar="PATH", help="also write the tidy table as CSV")
    backtest.add_argument("--start", metavar="TIME",
                          help="score archived history instead of a simulation: the readings "
                               "from TIME (the archive and the Kafka tail) against the fault "
                               "labels the simulator published (the archive's faults table); "
                               "e.g. 2026-01-05 or -7d")
    backtest.add_argument("--end", metavar="TIME",
                          help="with --start: the end of that period (default: now)")
    backtest.set_defaults(handler=cmd_backtest)

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
    archive.add_argument("--workers", type=_workers, default=1, metavar="N",
                         help="N archiver processes in the group (archiver-group), one /health "
                              "in front (they split the partitions; more archivers, on other "
                              "machines too, may join the same group)")
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
    sql.epilog = ("named queries (the same text `sensorlib spark-sql NAME` runs): "
                  + ", ".join(NAMED_QUERIES))

    spark_sql = sub.add_parser(
        "spark-sql", help="query the archive with Apache Spark (a local session; sensorlib[spark])",
        description="Run one Spark SQL query over the archive's Iceberg tables, read through "
                    "Iceberg's JDBC catalog on the archive's catalog database (the views "
                    "readings, alerts, dead_letters as in `sensorlib sql`, archive only, no "
                    "Kafka tail). Needs pyspark (pip install 'sensorlib[spark]'), Java 17+ "
                    "and Maven (the Iceberg and JDBC jars are fetched once). For a cluster: "
                    "`sensorlib status --spark` prints the spark-sql command line.",
        epilog="named queries: " + ", ".join(NAMED_QUERIES))
    spark_sql.add_argument("query", help="the SQL, or a named query ("
                                         + ", ".join(NAMED_QUERIES) + ")")
    spark_sql.add_argument("--master", help="Spark master (default local[2])")
    spark_sql.add_argument("--out", help="write the result to a .parquet or .csv file instead")
    spark_sql.add_argument("--force", action="store_true", help="replace --out if it exists")
    spark_sql.add_argument("--max-rows", type=int, default=50, help="rows printed (default 50)")
    spark_sql.set_defaults(handler=cmd_spark_sql)

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
    up.add_argument("--catalog", choices=["sqlite", "postgres"],
                    help="the archive's Iceberg catalog: postgres starts the local PostgreSQL "
                         f"(`sensorlib db start`, 127.0.0.1:{settings.db_port}, "
                         "SENSORLIB_DB_PORT) and gives every service its URL; sqlite the "
                         "warehouse's file (default: SENSORLIB_CATALOG_URI, else sqlite)")
    up.set_defaults(handler=cmd_up)

    status = sub.add_parser("status", help="health of each service and lag of each consumer group",
                            description="Exit code 0 when Kafka and every service are healthy, "
                                        "1 otherwise.")
    status.add_argument("--json", action="store_true",
                        help="print the same content as one JSON object (for scripts)")
    status.add_argument("--spark", action="store_true",
                        help="print the spark-sql command line (packages, --conf) that opens "
                             "the archive in Spark on a cluster, and the views' SQL; no checks")
    status.set_defaults(handler=cmd_status)

    add_rules_parser(sub)

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
