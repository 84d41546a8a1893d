"""Notifications: the notifier's throughput into Alertmanager, and publish → webhook latency.

    .venv/bin/python benchmarks/bench_notify.py [--n 50000] [--probes 20] [--bootstrap h:p]

Without ``--bootstrap`` a fresh local Kafka is started. A real Alertmanager (Debian's
``prometheus-alertmanager``) runs on a free port with ``group_wait`` 1 s, sending to a
webhook served here.

1. Throughput: N alerts (200 sensors, distinct ids) preloaded into a fresh topic;
   :class:`sensorlib.notify.notifier.Notifier` (batches of up to 5,000 per ``POST /api/v2/alerts``,
   offsets committed after each) from the group's start until Alertmanager accepted all N.
   Target ≥ 5,000 alerts/s. Baseline in the same run: Alertmanager alone, the same N alerts
   as ready-made JSON bodies of 5,000 posted back to back (two at once, as the notifier
   does) into a fresh Alertmanager, before and after the notifier's run (the mean: the
   machine's load drifts): what the notifier could reach if reading Kafka and building the
   payloads cost nothing. The ratio says how much of it the notifier keeps.
2. Latency: ``--probes`` alerts published one at a time (each its own group) while the
   notifier runs; time from the publish call to the webhook receiving it. Target p95 ≤
   group_wait + 1 s = 2 s.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

sys.path.insert(0, os.path.dirname(__file__))

import httpx
from common import broker, machine, private_topics

from sensorlib.kafka.admin import ensure_topics
from sensorlib.kafka.clients import make_producer
from sensorlib.kafka.ports import free_port
from sensorlib.model.events import Alert, alert_id
from sensorlib.notify.alertmanager import alertmanager_command, alertmanager_config
from sensorlib.notify.notifier import IN_FLIGHT, MAX_BATCH, Notifier
from sensorlib.notify.payload import alert_payload

GROUP_WAIT = 1.0


def _alert(sensor: str, when: datetime) -> Alert:
    return Alert(alert_id=alert_id(sensor, "threshold", when), sensor_id=sensor,
                 location="Bench", temperature=40.0, humidity=50.0, timestamp=when,
                 detected_at=when, rule="threshold", severity="critical",
                 reason="High temperature: 40.0°C")


def _webhook() -> tuple[ThreadingHTTPServer, dict[str, float]]:
    seen: dict[str, float] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
            now = time.perf_counter()
            for alert in body["alerts"]:
                seen.setdefault(alert["labels"]["alert_id"], now)
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, seen


def _start_alertmanager(settings: Any, folder: Path, webhooks: list[str]
                        ) -> tuple[subprocess.Popen[bytes], str]:
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    config = folder / "alertmanager.yml"
    config.write_text(alertmanager_config(settings, webhooks=webhooks,
                                          group_wait=f"{GROUP_WAIT:g}s", group_interval="5s"))
    with open(folder / "am.log", "wb") as log:
        am = subprocess.Popen(alertmanager_command(config, folder / "data", port),
                              stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            if httpx.get(url + "/-/ready").status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.1)
    return am, url


def _stop(am: subprocess.Popen[bytes]) -> None:
    am.terminate()
    am.wait(timeout=15)


def _alertmanager_alone(settings: Any, folder: Path, alerts: list[Alert],
                        batch: int = MAX_BATCH) -> float:
    """Alerts/s a fresh Alertmanager accepts from ready-made bodies posted back to back,
    :data:`~sensorlib.notify.notifier.IN_FLIGHT` at once like the notifier."""
    now = datetime.now(UTC)
    bodies = [json.dumps([alert_payload(a, settings, now=now) for a in alerts[i:i + batch]],
                         ensure_ascii=False).encode() for i in range(0, len(alerts), batch)]
    am, url = _start_alertmanager(settings, folder, [])
    try:
        with httpx.Client(timeout=120.0) as client, ThreadPoolExecutor(IN_FLIGHT) as pool:
            def post(body: bytes) -> None:
                client.post(url + "/api/v2/alerts", content=body,
                            headers={"Content-Type": "application/json"}).raise_for_status()

            started = time.perf_counter()
            list(pool.map(post, bodies))
            return len(alerts) / (time.perf_counter() - started)
    finally:
        _stop(am)


def run(bootstrap: str | None, n: int = 50_000, probes: int = 20) -> dict[str, Any]:
    """Throughput into an Alertmanager that only receives (no notification work competing
    for this machine's two cores), then latency to a webhook through a second one."""
    if shutil.which("prometheus-alertmanager") is None and shutil.which("alertmanager") is None:
        raise RuntimeError("prometheus-alertmanager is not installed")
    hook, seen = _webhook()
    folder = Path(tempfile.mkdtemp(prefix="bench-notify-"))
    with broker(bootstrap) as base:
        settings = private_topics(base, "notify")
        settings = settings.replace(topic_alerts=settings.topic_readings + "-alerts",
                                    topic_dlq=settings.topic_readings + "-dlq",
                                    notification_group=settings.topic_readings + "-notify")
        ensure_topics(settings)
        producer = make_producer(settings, linger_ms=20)
        try:
            now = datetime.now(UTC)
            alerts = [_alert(f"bench-{i % 200:03d}", now + timedelta(microseconds=i))
                      for i in range(n)]
            for a in alerts:
                producer.send(settings.topic_alerts, key=a.sensor_id, value=a.to_json())
            producer.flush(timeout=120)
            alone_before = _alertmanager_alone(settings, folder / "alone-before", alerts)

            am, url = _start_alertmanager(settings, folder / "throughput", [])
            try:
                notifier = Notifier(settings.replace(alertmanager_url=url))
                stop = threading.Event()
                started = time.perf_counter()
                worker = threading.Thread(target=notifier.run, args=(stop,), daemon=True)
                worker.start()
                first_at = first_sent = None
                while notifier.sent < n and time.perf_counter() - started < 300:
                    if first_at is None and notifier.sent:
                        first_at, first_sent = time.perf_counter(), notifier.sent
                    time.sleep(0.005)
                done_at = time.perf_counter()
                stop.set()
                worker.join(timeout=30)
            finally:
                _stop(am)
            # Again after: the machine's load drifts; the baseline is the mean of the two.
            alone_after = _alertmanager_alone(settings, folder / "alone-after", alerts)
            alone = (alone_before + alone_after) / 2
            del alerts
            elapsed = done_at - started
            rate = notifier.sent / elapsed
            # From the first accepted batch on: what the notifier sustains once its group
            # is joined (the join itself is the consumer group protocol's, not per alert).
            steady = ((notifier.sent - first_sent) / (done_at - first_at)
                      if first_at is not None and done_at > first_at else rate)
            print(f"throughput: {notifier.sent:,} alerts in {elapsed:.2f}s = {rate:,.0f}/s "
                  f"from the group's start, {steady:,.0f}/s once joined; Alertmanager alone "
                  f"{alone:,.0f}/s (before {alone_before:,.0f}, after {alone_after:,.0f}; "
                  f"notifier/alone = {rate / alone:.2f}, once joined {steady / alone:.2f})")

            am, url = _start_alertmanager(
                settings, folder / "latency",
                [f"http://127.0.0.1:{hook.server_address[1]}/hook"])
            notifier = Notifier(settings.replace(alertmanager_url=url))
            stop = threading.Event()
            worker = threading.Thread(target=notifier.run, args=(stop,), daemon=True)
            worker.start()
            try:
                latencies = []
                for i in range(probes):
                    a = _alert(f"probe-{i:03d}", datetime.now(UTC))
                    t0 = time.perf_counter()
                    producer.send(settings.topic_alerts, key=a.sensor_id, value=a.to_json())
                    producer.flush()
                    while a.alert_id not in seen and time.perf_counter() - t0 < 30:
                        time.sleep(0.005)
                    latencies.append(seen.get(a.alert_id, float("inf")) - t0)
            finally:
                stop.set()
                worker.join(timeout=30)
                _stop(am)
            latencies.sort()
            p95 = latencies[max(0, round(0.95 * len(latencies)) - 1)]
            p50 = latencies[len(latencies) // 2]
            print(f"publish → webhook: p50 {p50:.2f}s, p95 {p95:.2f}s (group_wait {GROUP_WAIT}s)")
        finally:
            producer.close(timeout=5)
            hook.shutdown()
            shutil.rmtree(folder, ignore_errors=True)
    return {"machine": machine(), "n": n, "seconds": round(elapsed, 3),
            "alerts_per_s": round(rate, 1), "alerts_per_s_joined": round(steady, 1),
            "alertmanager_alone_per_s": round(alone, 1),
            "alertmanager_alone_before_after": [round(alone_before, 1), round(alone_after, 1)], "ratio_vs_alone": round(rate / alone, 3),
            "ratio_vs_alone_joined": round(steady / alone, 3),
            "group_wait_s": GROUP_WAIT,
            "latency_p50_s": round(p50, 3), "latency_p95_s": round(p95, 3), "probes": probes}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=50_000)
    parser.add_argument("--probes", type=int, default=20)
    parser.add_argument("--bootstrap")
    args = parser.parse_args()
    print(json.dumps(run(args.bootstrap, args.n, args.probes), indent=2))


if __name__ == "__main__":
    main()
