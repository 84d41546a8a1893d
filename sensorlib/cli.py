"""The ``sensorlib`` command: a thin layer that parses arguments and calls the library."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from collections.abc import Callable, Sequence

from sensorlib.config import Settings
from sensorlib.errors import SensorlibError

Handler = Callable[[argparse.Namespace, Settings], int]


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- broker


def _local_kafka(settings: Settings):  # noqa: ANN202 - LocalKafka, imported lazily
    from sensorlib.broker import LocalKafka

    return LocalKafka.from_settings(settings)


def cmd_broker(args: argparse.Namespace, settings: Settings) -> int:
    from sensorlib.broker import KAFKA_VERSION, resolve_libs

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
    from sensorlib.kafka_io import ensure_topics, wait_for_kafka

    wait_for_kafka(settings, timeout=args.timeout)
    for topic, status in ensure_topics(settings).items():
        print(f"{topic}: {status}")
    return 0


# --------------------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sensorlib",
        description="Watch, analyse and replay IoT sensor event streams on Apache Kafka.",
    )
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    broker = sub.add_parser("broker", help="run a local Apache Kafka (KRaft) without Docker")
    broker.add_argument("action", choices=["start", "stop", "status", "fetch"])
    broker.add_argument("--detach", "-d", action="store_true", help="start in the background")
    broker.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for start")
    broker.set_defaults(handler=cmd_broker)

    topics = sub.add_parser("topics", help="create the project's topics (idempotent)")
    topics.add_argument("--timeout", type=float, default=30.0)
    topics.set_defaults(handler=cmd_topics)

    for register in _EXTRA_COMMANDS:
        register(sub)
    return parser


#: Other modules' sub-command registrations (kept here so ``--help`` lists them all).
_EXTRA_COMMANDS: list[Callable[[argparse._SubParsersAction], None]] = []


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``sensorlib`` console script."""
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
        return 1
    except KeyboardInterrupt:
        return 130


def print_json(data: object) -> None:
    print(json.dumps(data, indent=2, default=str))


if __name__ == "__main__":
    sys.exit(main())
