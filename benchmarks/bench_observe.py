"""What observability costs the processor: throughput with tracing off and on, same topic.

    .venv/bin/python benchmarks/bench_observe.py [--n 300000] [--rounds 3] [--baseline DIR]

One broker, one preloaded readings topic whose every record carries a ``traceparent``
header (as if every reading had been traced upstream: the worst case for the processor).
Each variant runs the real :class:`~sensorlib.processor.loop.Processor` (with its Prometheus
metrics) over all records with a fresh consumer group, in its own process, rounds
interleaved in rotating order so machine noise spreads evenly; the median of each is reported:

- ``off``: no exporter configured (the default): tracing must cost nothing;
- ``on``: ``OTEL_EXPORTER_ZIPKIN_ENDPOINT`` set to a local sink that accepts and drops
  spans (the SDK's whole cost, batch spans with links, per-alert spans, JSON export);
- ``baseline`` (with ``--baseline DIR``): an older ``sensorlib`` package found in DIR
  (e.g. a copy of the tree before observability), for "within x % of before".
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

sys.path.insert(0, os.path.dirname(__file__))

from common import broker, machine, private_topics

from sensorlib.config import Settings
from sensorlib.kafka.clients import make_producer


def preload_traced(settings: Settings, n: int) -> None:
    """``n`` simulated readings ending now (all inside the accepted event-time window), each
    with its own sampled ``traceparent`` header."""
    from sensorlib.ingest.produce import backfill_simulator

    producer = make_producer(settings, client_id="bench-preload", linger_ms=20,
                             batch_size=512 * 1024)
    sim, duration = backfill_simulator(seed=1, interval=0.1, count=n)
    for reading in sim.stream(count=n, duration=duration):
        header = f"00-{secrets.token_hex(16)}-{secrets.token_hex(8)}-01".encode()
        producer.send(settings.topic_readings, key=reading.sensor_id, value=reading.to_json(),
                      headers=[("traceparent", header)])
    producer.flush()
    producer.close()


class _Sink(BaseHTTPRequestHandler):
    """Accepts Zipkin span posts and drops them."""

    received = 0

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length") or 0))
        _Sink.received += 1
        self.send_response(202)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def child(args: argparse.Namespace) -> None:
    """One measurement (run in its own process): prints {"rate": records/s}."""
    from bench_processor import processor_rate

    settings = Settings.from_env().replace(
        bootstrap_servers=args.bootstrap, external=True, topic_readings=args.topic,
        topic_alerts=args.topic + "-alerts", topic_dlq=args.topic + "-dlq",
        processor_group=args.group)
    if args.variant == "on":
        from sensorlib.observe.tracing import setup_tracing

        assert setup_tracing("bench"), "tracing did not start"
    rate, alerts, _ = processor_rate(settings, args.n)
    print(json.dumps({"rate": rate, "alerts": alerts}))


def run(bootstrap: str | None, n: int, rounds: int, baseline: str | None) -> dict[str, object]:
    """Measure each variant ``rounds`` times; returns the figures (also printed)."""
    sink = ThreadingHTTPServer(("127.0.0.1", 0), _Sink)
    threading.Thread(target=sink.serve_forever, daemon=True).start()
    variants = ["off", "on"] + (["baseline"] if baseline else [])
    rates: dict[str, list[float]] = {v: [] for v in variants}
    with broker(bootstrap) as base:
        settings = private_topics(base, "observe")
        # Alerts and DLQ topics named after the readings topic (see child()).
        private = settings.replace(topic_alerts=settings.topic_readings + "-alerts",
                                   topic_dlq=settings.topic_readings + "-dlq")
        from sensorlib.kafka.admin import ensure_topics

        ensure_topics(private)
        print(f"Preloading {n:,} traced readings …", flush=True)
        preload_traced(private, n)
        for r in range(rounds):
            # Each round starts with another variant: no variant always runs first.
            for variant in variants[r % len(variants):] + variants[:r % len(variants)]:
                env = dict(os.environ)
                env.pop("OTEL_EXPORTER_OTLP_ENDPOINT", None)
                env.pop("OTEL_EXPORTER_ZIPKIN_ENDPOINT", None)
                if variant == "on":
                    env["OTEL_EXPORTER_ZIPKIN_ENDPOINT"] = \
                        f"http://127.0.0.1:{sink.server_address[1]}/api/v2/spans"
                if variant == "baseline":
                    env["PYTHONPATH"] = os.pathsep.join(filter(None, [
                        baseline, env.get("PYTHONPATH")]))
                out = subprocess.run(
                    [sys.executable, __file__, "--child", "--variant", variant,
                     "--bootstrap", private.bootstrap_servers, "--topic", private.topic_readings,
                     "--group", f"bench-observe-{variant}-{r}", "--n", str(n)],
                    env=env, capture_output=True, text=True, check=True)
                rate = json.loads(out.stdout.strip().splitlines()[-1])["rate"]
                rates[variant].append(rate)
                print(f"  round {r + 1} {variant:<8} {rate:,.0f} records/s", flush=True)
    sink.shutdown()
    median = {v: statistics.median(x) for v, x in rates.items()}
    result: dict[str, object] = {
        "machine": machine(),
        "records": n,
        "rounds": rounds,
        "processor_per_s": {v: round(m) for v, m in median.items()},
        "tracing_on_vs_off": round(median["on"] / median["off"], 3),
        "span_posts_received": _Sink.received,
    }
    if baseline:
        result["off_vs_baseline"] = round(median["off"] / median["baseline"], 3)
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=300_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--bootstrap")
    parser.add_argument("--baseline", help="folder holding an older sensorlib package")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--variant", help=argparse.SUPPRESS)
    parser.add_argument("--topic", help=argparse.SUPPRESS)
    parser.add_argument("--group", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
    else:
        run(args.bootstrap, args.n, args.rounds, args.baseline)
