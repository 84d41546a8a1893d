"""Dashboard benchmark: page load with 1,000 sensors, produce-to-visible latency, memory soak.

    .venv/bin/python benchmarks/bench_dashboard.py                 # ~6 minutes
    .venv/bin/python benchmarks/bench_dashboard.py --minutes 30    # the issue's full soak

Page load: a fresh browser context opens ``/live`` and the page itself reports
``performance.now()`` (milliseconds since navigation start) at the first animation
frame where all the cards it should show are in the DOM — 5 for the reference fleet
(the baseline, served by its own dashboard in the same run), 24 (one page, worst first)
for a fleet of 1,000 sensors reporting every 2 s. Loads alternate between the two so
that a busy machine slows both alike. The server's time to answer ``GET /live`` (it
builds the session's document) is measured too. Target: 1,000 sensors < 3 s.
Latency: a reading with a unique temperature is produced to Kafka; the page itself
notices the value on its sensor card (checked every animation frame) and reports
``performance.now()``, so the figure is Kafka → feed → push → DOM, as a user sees it.
Soak: the reference fleet at 10× its rate (5 sensors × 5 readings/s) while browser
sessions open and close; the server's RSS is sampled. Targets: p95 < 1 s, RSS flat
after warm-up (< 50 MB growth).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import broker, machine

from sensorlib.config import Settings
from sensorlib.dashboard import serve_command
from sensorlib.ingest.simulate import REFERENCE_FLEET, FaultRates, Simulator
from sensorlib.kafka.admin import ensure_topics
from sensorlib.kafka.clients import make_producer
from sensorlib.kafka.ports import free_port
from sensorlib.model.events import Reading

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]

#: Finds a card's temperature through Panel's shadow roots; reports when it shows ``text``.
_SEEN_JS = """
([sid, text]) => {
  window.__roots = window.__roots || {};
  const sel = `.sensor-card[data-sensor="${sid}"] .temperature`;
  let root = window.__roots[sid];
  let el = root && root.isConnected !== false ? root.querySelector(sel) : null;
  if (!el) {
    const walk = (r) => {
      if (r.querySelector(sel)) return r;
      for (const h of r.querySelectorAll('*')) {
        if (h.shadowRoot) { const f = walk(h.shadowRoot); if (f) return f; }
      }
      return null;
    };
    root = walk(document);
    if (root) { window.__roots[sid] = root; el = root.querySelector(sel); }
  }
  return el && el.textContent.includes(text) ? performance.now() : null;
}
"""


#: Counts the sensor cards on the page (through Panel's shadow roots); returns
#: ``performance.now()`` once there are at least ``n``.
_CARDS_JS = """
(n) => {
  let count = 0;
  const walk = (r) => {
    count += r.querySelectorAll('.sensor-card').length;
    for (const h of r.querySelectorAll('*')) { if (h.shadowRoot) walk(h.shadowRoot); }
  };
  walk(document);
  return count >= n ? performance.now() : null;
}
"""

#: Cards one page shows (sensorlib.dashboard.app.PAGE_SIZE).
PAGE_CARDS = 24


def _private(settings: Settings) -> Settings:
    suffix = uuid.uuid4().hex[:6]
    fresh = settings.replace(
        topic_readings=f"bench-dash-readings-{suffix}", topic_alerts=f"bench-dash-alerts-{suffix}",
        topic_dlq=f"bench-dash-dlq-{suffix}", processor_group=f"bench-dash-proc-{suffix}",
        dashboard_readings_group=f"bench-dash-readings-group-{suffix}",
        dashboard_alerts_group=f"bench-dash-alerts-group-{suffix}",
    )
    ensure_topics(fresh)
    return fresh


def _serve(settings: Settings, log: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    settings = settings.replace(dashboard_port=port)
    env = {**os.environ, **settings.to_env(), "KAFKA_BOOTSTRAP_SERVERS": settings.bootstrap_servers}
    with open(log, "wb") as out:
        proc = subprocess.Popen(serve_command(settings), env=env, stdout=out,
                                stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/live"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=5).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    proc.kill()
    raise RuntimeError(f"dashboard did not start; see {log}")


def _stop(proc: subprocess.Popen[bytes] | None) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(15)


class _Load(threading.Thread):
    """The fleet at ``rate`` readings/s per sensor, stamped with the wall clock."""

    def __init__(self, settings: Settings, rate: float) -> None:
        super().__init__(daemon=True, name="bench-load")
        self.settings = settings
        self.rate = rate
        self.stop = threading.Event()
        self.sent = 0

    def run(self) -> None:
        producer = make_producer(self.settings, client_id="bench-dashboard-load")
        sim = Simulator(seed=3, faults=FaultRates.none(), interval=1.0 / self.rate)
        tick = 1.0 / self.rate
        next_at = time.monotonic()
        while not self.stop.is_set():
            for r in sim.readings_at(datetime.now(UTC)):
                producer.send(self.settings.topic_readings, key=r.sensor_id, value=r.to_json())
                self.sent += 1
            next_at += tick
            self.stop.wait(max(0.0, next_at - time.monotonic()))
        producer.flush()
        producer.close()


def _fleet_id(i: int) -> str:
    return f"fleet-{i:04d}"


def _fleet_reading(i: int, at: datetime) -> Reading:
    # Deterministic values: a few critical and warning sensors, the rest normal, each
    # wandering by ±0.4 (never across a threshold) so the sparklines have a shape.
    base = 36.5 if i % 97 == 0 else 32.0 if i % 41 == 0 else 20.0 + (i % 50) / 10
    wave = math.sin(at.timestamp() / 20 + i)
    return Reading(sensor_id=_fleet_id(i), temperature=round(base + 0.4 * wave, 2),
                   humidity=round(55.0 + 3 * math.cos(at.timestamp() / 30 + i), 2),
                   location=f"Hall {i % 20}", timestamp=at)


def seed_fleet(settings: Settings, sensors: int, minutes: float = 2.0,
               interval: float = 2.0) -> int:
    """``sensors`` sensors' last ``minutes`` at one reading per ``interval`` (back-filled)."""
    producer = make_producer(settings, client_id="bench-dashboard-fleet", linger_ms=20,
                             batch_size=256 * 1024)
    now = datetime.now(UTC)
    ticks = int(minutes * 60 / interval)
    n = 0
    for tick in range(ticks, 0, -1):
        at = now - timedelta(seconds=tick * interval)
        for i in range(sensors):
            producer.send(settings.topic_readings, key=_fleet_id(i),
                          value=_fleet_reading(i, at).to_json(),
                          timestamp_ms=int(at.timestamp() * 1000))
            n += 1
    producer.flush(120)
    producer.close()
    return n


class _FleetLoad(threading.Thread):
    """``sensors`` sensors, each reporting every ``interval`` s, spread over the interval."""

    def __init__(self, settings: Settings, sensors: int, interval: float = 2.0) -> None:
        super().__init__(daemon=True, name="bench-fleet-load")
        self.settings = settings
        self.sensors = sensors
        self.interval = interval
        self.stop = threading.Event()
        self.sent = 0

    def run(self) -> None:
        producer = make_producer(self.settings, client_id="bench-dashboard-fleet-load")
        slices = 10  # a tenth of the fleet every interval/10
        next_at = time.monotonic()
        part = 0
        while not self.stop.is_set():
            now = datetime.now(UTC)
            for i in range(part, self.sensors, slices):
                producer.send(self.settings.topic_readings, key=_fleet_id(i),
                              value=_fleet_reading(i, now).to_json())
                self.sent += 1
            part = (part + 1) % slices
            next_at += self.interval / slices
            self.stop.wait(max(0.0, next_at - time.monotonic()))
        producer.flush()
        producer.close()


def _load_once(browser: Any, url: str, cards: int) -> float:
    """Seconds from navigation start until ``cards`` cards are in a fresh page's DOM."""
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    try:
        page = context.new_page()
        page.goto(url, wait_until="commit", timeout=120_000)
        ms = page.wait_for_function(_CARDS_JS, arg=cards, polling="raf",
                                    timeout=120_000).json_value()
        return ms / 1000
    finally:
        context.close()


def _get_once(url: str) -> float:
    started = time.perf_counter()
    answer = httpx.get(url, timeout=120)
    answer.raise_for_status()
    return time.perf_counter() - started


def page_load(browser: Any, baseline_url: str, fleet_url: str, *, fleet_cards: int,
              loads: int) -> dict[str, Any]:
    """Alternate page loads of the baseline and the fleet dashboards; medians and ratio."""
    base: list[float] = []
    fleet: list[float] = []
    base_get: list[float] = []
    fleet_get: list[float] = []
    _load_once(browser, baseline_url, len(REFERENCE_FLEET))  # warm-up (uncounted): caches,
    _load_once(browser, fleet_url, fleet_cards)              # first session of each server
    for _ in range(loads):
        base.append(_load_once(browser, baseline_url, len(REFERENCE_FLEET)))
        fleet.append(_load_once(browser, fleet_url, fleet_cards))
        base_get.append(_get_once(baseline_url))
        fleet_get.append(_get_once(fleet_url))
    return {
        "page_loads": loads,
        "page_load_baseline_s": round(statistics.median(base), 3),
        "page_load_fleet_s": round(statistics.median(fleet), 3),
        "page_load_fleet_max_s": round(max(fleet), 3),
        "page_load_ratio": round(statistics.median(fleet) / statistics.median(base), 2),
        "get_live_baseline_s": round(statistics.median(base_get), 3),
        "get_live_fleet_s": round(statistics.median(fleet_get), 3),
        "page_load_baseline_all_s": [round(x, 3) for x in base],
        "page_load_fleet_all_s": [round(x, 3) for x in fleet],
    }


def _open_page(browser: Any, url: str) -> Any:
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    page.goto(url)
    page.wait_for_function(_SEEN_JS, arg=["sensor-01", ""], polling=100, timeout=60_000)
    return page


def latency(settings: Settings, browser: Any, url: str, n: int) -> list[float]:
    """Produce ``n`` readings one at a time; seconds until each is visible on its card."""
    page = _open_page(browser, url)
    producer = make_producer(settings, client_id="bench-dashboard-probe", linger_ms=0)
    out: list[float] = []
    try:
        for i in range(n):
            spec = REFERENCE_FLEET[i % len(REFERENCE_FLEET)]
            value = round(100.0 + (i % 900) * 0.1, 1)  # unique on the card it lands on
            reading = Reading(sensor_id=spec.sensor_id, temperature=value, humidity=50.0,
                              location=spec.location, timestamp=datetime.now(UTC))
            started = page.evaluate("performance.now()")
            producer.send(settings.topic_readings, key=spec.sensor_id, value=reading.to_json())
            producer.flush()
            seen = page.wait_for_function(_SEEN_JS, arg=[spec.sensor_id, f"{value:.1f}"],
                                          polling="raf", timeout=30_000).json_value()
            out.append((seen - started) / 1000)
    finally:
        producer.close()
        page.close()
    return out


def soak(settings: Settings, browser: Any, url: str, pid: int, *, minutes: float,
         rate: float, sessions: int, churn_every: float) -> dict[str, Any]:
    """Load at ``rate``/s per sensor with sessions churning; sample the server's RSS."""
    server = psutil.Process(pid)
    load = _Load(settings, rate)
    load.start()
    pages = [_open_page(browser, url) for _ in range(sessions)]
    samples: list[tuple[float, float]] = []
    opened = closed = 0
    started = time.monotonic()
    end = started + minutes * 60
    next_churn = started + churn_every
    try:
        while time.monotonic() < end:
            rss = server.memory_info().rss / 2**20
            samples.append((time.monotonic() - started, rss))
            if time.monotonic() >= next_churn:
                pages.pop(0).close()
                closed += 1
                pages.append(_open_page(browser, url))
                opened += 1
                next_churn += churn_every
            time.sleep(5)
    finally:
        load.stop.set()
        load.join(30)
        for page in pages:
            page.close()
    elapsed = time.monotonic() - started
    warm = [rss for t, rss in samples if t >= min(60.0, elapsed / 3)] or [s[1] for s in samples]
    return {
        "soak_minutes": round(elapsed / 60, 2),
        "readings_per_s": round(load.sent / elapsed, 1),
        "sessions_open": sessions, "sessions_opened": opened, "sessions_closed": closed,
        "rss_start_mb": round(samples[0][1], 1),
        "rss_after_warmup_mb": round(warm[0], 1),
        "rss_end_mb": round(samples[-1][1], 1),
        "rss_max_mb": round(max(s[1] for s in samples), 1),
        "rss_growth_after_warmup_mb": round(samples[-1][1] - warm[0], 1),
        "rss_samples": [(round(t), round(r, 1)) for t, r in samples],
    }


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def run(bootstrap: str | None = None, readings: int = 300, minutes: float = 2.0,
        rate: float = 5.0, sessions: int = 3, churn_every: float = 15.0,
        sensors: int = 1000, loads: int = 5) -> dict[str, object]:
    """Measure page load, latency and memory; returns the figures (also printed)."""
    from playwright.sync_api import sync_playwright

    with broker(bootstrap) as base, tempfile.TemporaryDirectory(prefix="bench-dash-") as tmp:
        settings = _private(base)
        sim = Simulator(seed=1, faults=FaultRates.none(),
                        start=datetime.now(UTC).replace(microsecond=0))
        producer = make_producer(settings)
        for r in sim.readings_at(datetime.now(UTC)):
            producer.send(settings.topic_readings, key=r.sensor_id, value=r.to_json())
        producer.flush()
        producer.close()
        fleet_settings = _private(base)
        print(f"Seeding {sensors:,} sensors (2 minutes of history) …", flush=True)
        seed_fleet(fleet_settings, sensors)
        proc, url = _serve(settings, Path(tmp) / "panel.log")
        fleet_proc: subprocess.Popen[bytes] | None = None
        fleet_load = _FleetLoad(fleet_settings, sensors)
        try:
            fleet_proc, fleet_url = _serve(fleet_settings, Path(tmp) / "panel-fleet.log")
            fleet_load.start()
            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path="/usr/bin/chromium",
                                             args=CHROMIUM_ARGS)
                print(f"Page load: {loads} loads each, 5 sensors vs {sensors:,} sensors "
                      "(reporting every 2 s) …", flush=True)
                load = page_load(browser, url, fleet_url,
                                 fleet_cards=min(sensors, PAGE_CARDS), loads=loads)
                print(f"  5 sensors {load['page_load_baseline_s']:.2f} s, {sensors:,} sensors "
                      f"{load['page_load_fleet_s']:.2f} s ({load['page_load_ratio']:.2f}×); "
                      f"GET /live {load['get_live_baseline_s'] * 1000:.0f} ms vs "
                      f"{load['get_live_fleet_s'] * 1000:.0f} ms", flush=True)
                fleet_load.stop.set()
                fleet_load.join(30)
                _stop(fleet_proc)
                print(f"Latency: {readings} readings, one at a time …", flush=True)
                lat = latency(settings, browser, url, readings)
                print(f"  p50 {statistics.median(lat) * 1000:.0f} ms, "
                      f"p95 {_pct(lat, 0.95) * 1000:.0f} ms", flush=True)
                print(f"Soak: {minutes:g} min at {rate:g} readings/s per sensor, "
                      f"{sessions} sessions churning every {churn_every:g} s …", flush=True)
                mem = soak(settings, browser, url, proc.pid, minutes=minutes, rate=rate,
                           sessions=sessions, churn_every=churn_every)
                browser.close()
        finally:
            fleet_load.stop.set()
            _stop(fleet_proc)
            _stop(proc)
    result: dict[str, object] = {
        "benchmark": "dashboard",
        "machine": machine(),
        "fleet_sensors": sensors,
        **load,
        "latency_readings": len(lat),
        "latency_p50_ms": round(statistics.median(lat) * 1000, 1),
        "latency_p95_ms": round(_pct(lat, 0.95) * 1000, 1),
        "latency_max_ms": round(max(lat) * 1000, 1),
        **mem,
    }
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", help="an existing broker (default: start a local one)")
    parser.add_argument("--readings", type=int, default=300, help="latency probes (300)")
    parser.add_argument("--minutes", type=float, default=2.0, help="soak length (2; issue: 30)")
    parser.add_argument("--rate", type=float, default=5.0,
                        help="readings/s per sensor during the soak (5 = 10x the reference)")
    parser.add_argument("--sessions", type=int, default=3, help="browser sessions kept open")
    parser.add_argument("--churn-every", type=float, default=15.0,
                        help="seconds between closing one session and opening another")
    parser.add_argument("--sensors", type=int, default=1000,
                        help="sensors of the page-load fleet (1000)")
    parser.add_argument("--loads", type=int, default=5,
                        help="counted page loads of each dashboard (5)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    result = run(args.bootstrap, args.readings, args.minutes, args.rate, args.sessions,
                 args.churn_every, args.sensors, args.loads)
    shown = {k: v for k, v in result.items() if k != "rss_samples"}
    print(json.dumps(shown, indent=2))
    print("RSS samples (s, MB):", result["rss_samples"])
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
