"""The Ops tab's arithmetic (issue 17): parsing /metrics text, counter rates, quantiles from
histogram buckets, figures and their HTML — pure functions, checked against hand-computed
values and against prometheus_client's own output."""

from __future__ import annotations

import math

import pytest
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from sensorlib.dashboard.ops import (
    Scrape,
    buckets,
    counter_increase,
    counter_rate,
    histogram_quantile,
    parse_metrics,
    pick_window,
    total,
    window_quantile,
)
from sensorlib.dashboard.ops_tab import metrics_urls, ops_figures, render_ops

TEXT = """\
# HELP sensorlib_alerts_total Alerts
# TYPE sensorlib_alerts_total counter
sensorlib_alerts_total{rule="threshold",severity="critical"} 3.0
sensorlib_alerts_total{rule="threshold",severity="warning"} 5.0
sensorlib_alerts_total{rule="rate",severity="warning"} 2.0
# HELP sensorlib_consumer_lag_records Lag
# TYPE sensorlib_consumer_lag_records gauge
sensorlib_consumer_lag_records{partition="0",topic="r"} 4.0
sensorlib_consumer_lag_records{partition="1",topic="r"} 6.0
"""


def test_parse_and_total() -> None:
    samples = parse_metrics(TEXT)
    assert samples[("sensorlib_alerts_total", (("rule", "rate"), ("severity", "warning")))] == 2
    assert total(samples, "sensorlib_alerts_total") == 10
    assert total(samples, "sensorlib_alerts_total", severity="warning") == 7
    assert total(samples, "sensorlib_consumer_lag_records") == 10
    assert total(samples, "sensorlib_nothing_total") is None


def test_parse_refuses_what_is_not_prometheus_text() -> None:
    with pytest.raises(ValueError):
        parse_metrics("<html>not metrics</html>\n")


def test_counter_rate_handles_new_series_and_restarts() -> None:
    before = parse_metrics(TEXT)
    after = dict(before)
    after[("sensorlib_alerts_total", (("rule", "threshold"), ("severity", "critical")))] = 7.0
    after[("sensorlib_alerts_total", (("rule", "silence"), ("severity", "warning")))] = 1.0
    assert counter_increase(before, after, "sensorlib_alerts_total") == 4 + 1
    rate = counter_rate(Scrape(100.0, before), Scrape(110.0, after), "sensorlib_alerts_total")
    assert rate == pytest.approx(0.5)
    # A service restart: the counter starts again from 0; what it has now is the increase.
    restarted = {("sensorlib_alerts_total", (("rule", "threshold"), ("severity", "warning"))): 1.0}
    assert counter_increase(before, restarted, "sensorlib_alerts_total") == 1
    assert counter_rate(Scrape(1.0, before), Scrape(1.0, after), "sensorlib_alerts_total") is None
    assert counter_rate(Scrape(1.0, error="down"), Scrape(2.0, after),
                        "sensorlib_alerts_total") is None


def test_histogram_quantile_matches_prometheus_interpolation() -> None:
    cumulative = [(0.1, 10.0), (0.5, 30.0), (1.0, 40.0), (math.inf, 40.0)]
    # rank 20 is in (0.1, 0.5]: 0.1 + 0.4 * (20 - 10) / (30 - 10) = 0.3
    assert histogram_quantile(0.5, cumulative) == pytest.approx(0.3)
    # rank 39.6 is in (0.5, 1.0]: 0.5 + 0.5 * (39.6 - 30) / 10 = 0.98
    assert histogram_quantile(0.99, cumulative) == pytest.approx(0.98)
    # rank 2 in the first bucket: interpolated from 0
    assert histogram_quantile(0.05, cumulative) == pytest.approx(0.02)
    # in the +Inf bucket: the highest finite bound
    assert histogram_quantile(0.99, [(1.0, 1.0), (math.inf, 10.0)]) == 1.0
    assert histogram_quantile(0.5, [(1.0, 0.0), (math.inf, 0.0)]) is None
    assert histogram_quantile(0.5, []) is None
    with pytest.raises(ValueError):
        histogram_quantile(1.5, cumulative)


def test_window_quantile_of_a_real_prometheus_client_histogram() -> None:
    registry = CollectorRegistry()
    h = Histogram("sensorlib_event_to_alert_seconds", "e2a", buckets=(0.1, 0.5, 1.0, 5.0),
                  registry=registry)
    for _ in range(100):
        h.observe(4.0)  # old, slow observations: before the window
    before = Scrape(0.0, parse_metrics(generate_latest(registry).decode()))
    for value in [0.05] * 50 + [0.3] * 49 + [0.9]:
        h.observe(value)
    after = Scrape(60.0, parse_metrics(generate_latest(registry).decode()))
    assert buckets(after.samples, "sensorlib_event_to_alert_seconds")[-1] == (math.inf, 200.0)
    # Only what the window observed: rank 50 is the 50th of 50 in (0, 0.1] -> 0.1
    assert window_quantile(0.5, before, after, "sensorlib_event_to_alert_seconds") == \
        pytest.approx(0.1)
    # rank 99 of 100: 0.1 + 0.4 * (99 - 50) / 49 = 0.5
    assert window_quantile(0.99, before, after, "sensorlib_event_to_alert_seconds") == \
        pytest.approx(0.5)
    # Since start: rank 100 of 200 is the one observation in (0.5, 1.0] -> its top, 1.0
    assert window_quantile(0.5, None, after, "sensorlib_event_to_alert_seconds") == \
        pytest.approx(1.0)


def test_pick_window_takes_the_oldest_scrape_inside_the_window() -> None:
    history = [Scrape(t, {}) for t in (0.0, 30.0, 50.0)] + [Scrape(55.0, error="x"),
                                                           Scrape(100.0, {})]
    before, after = pick_window(history, 60.0)
    assert (before.at, after.at) == (50.0, 100.0)
    before, after = pick_window(history[:1], 60.0)
    assert before is None and after.at == 0.0
    assert pick_window([Scrape(1.0, error="down")], 60.0) == (None, None)


def _scrapes(name: str, values: list[tuple[float, float]], extra: str = "") -> list[Scrape]:
    out = []
    for at, value in values:
        registry = CollectorRegistry()
        Counter(name.removesuffix("_total"), "c", registry=registry).inc(value)
        out.append(Scrape(at, parse_metrics(generate_latest(registry).decode() + extra)))
    return out


def test_figures_and_their_html() -> None:
    lag = ('# TYPE sensorlib_consumer_lag_records gauge\n'
           'sensorlib_consumer_lag_records{partition="0",topic="r"} 7.0\n')
    history = {
        "producer": _scrapes("sensorlib_readings_accepted_total", [(0.0, 0), (10.0, 25)]),
        "processor": _scrapes("sensorlib_alerts_total", [(0.0, 1), (10.0, 6)], lag),
        "archiver": [Scrape(5.0, {}), Scrape(10.0, error="ConnectError: refused")],
    }
    figures = ops_figures(history, {"producer": "http://p/metrics"},
                          {"zipkin": ("http://127.0.0.1:9411/zipkin/", True),
                           "prometheus": ("http://127.0.0.1:9090/", False)}, now=12.0)
    assert figures.rates[("producer", "readings accepted")] == pytest.approx(2.5)
    assert figures.rates[("processor", "alerts")] == pytest.approx(0.5)
    assert figures.totals[("processor", "alerts")] == 6
    assert figures.lag["processor"] == 7
    assert figures.rates[("archiver", "rows archived")] is None
    up = {s.name: s.up for s in figures.services}
    assert up == {"producer": True, "processor": True, "archiver": False, "dashboard": False}
    html = render_ops(figures)
    assert '<div class="stat-value">2.50</div><div class="stat-label">readings accepted /s' in html
    assert 'data-service="archiver" data-up="false"' in html
    assert "down (7 s)" in html and "ConnectError: refused" in html
    assert 'href="http://127.0.0.1:9411/zipkin/"' in html
    assert "Prometheus: not running" in html


def test_render_escapes_scrape_errors() -> None:
    history = {"producer": [Scrape(1.0, error='<script>alert(1)</script>')]}
    html = render_ops(ops_figures(history, {}, {}, now=2.0))
    assert "<script>" not in html and "&lt;script&gt;" in html


def test_metrics_urls_follow_settings(base_settings) -> None:
    settings = base_settings.replace(host="0.0.0.0", producer_port=1111, processor_port=2222,
                                     archiver_port=3333)
    assert metrics_urls(settings) == {"producer": "http://127.0.0.1:1111/metrics",
                                      "processor": "http://127.0.0.1:2222/metrics",
                                      "archiver": "http://127.0.0.1:3333/metrics"}
