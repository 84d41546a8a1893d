"""The alert feed's silences (issue 28, item 4) against a real Alertmanager: a silence made
with the very ``amtool`` command the feed offers marks the alerts it matches, and only those;
an Alertmanager that is down leaves the feed without marks or links, and no error."""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime
from pathlib import Path

import httpx

from sensorlib.dashboard import render
from sensorlib.dashboard.silences import (
    SilenceWatch,
    alert_labels,
    amtool_command,
    silence_url,
)
from sensorlib.dashboard.state import AlertView
from sensorlib.kafka.ports import free_port
from tests.notify.conftest import Alertmanager, needs_alertmanager

pytestmark = [needs_alertmanager]

HOSTILE = 'noisy-<b>"01"</b> \\ $(touch {flag})'


def view(sensor: str, rule: str = "threshold", alert_id: str = "a-1") -> AlertView:
    now = datetime.now(UTC)
    return AlertView(alert_id=alert_id, sensor_id=sensor, location="Lab <i>", severity="critical",
                     reason="High <script>alert(1)</script>", rule=rule, temperature=40.0,
                     humidity=50.0, timestamp=now, detected_at=now)


def test_the_offered_amtool_command_silences_exactly_that_sensor(
        alertmanager: Alertmanager, tmp_path: Path) -> None:
    flag = tmp_path / "ran"
    hostile = HOSTILE.format(flag=flag)
    watch = SilenceWatch(alertmanager.url)
    with httpx.Client() as client:
        watch.poll(client)
        assert watch.reachable and watch.silences == ()
        # Debian's package serves no web UI: the feed offers amtool, not a dead link.
        assert not watch.has_ui
        command = amtool_command(alertmanager.url, hostile)
        done = subprocess.run(["bash", "-c", command], capture_output=True, text=True,
                              timeout=30, check=False)
        assert done.returncode == 0, done.stderr
        assert not flag.exists()  # the sensor id was an argument, not shell code
        version = watch.version
        watch.poll(client)
    assert watch.version > version
    [silence] = watch.silences
    assert watch.matching(alert_labels(view(hostile))) == [silence]
    assert watch.matching(alert_labels(view("noisy-01"))) == []
    # The notifier strips labels: Alertmanager holds this alert under the same sensor.
    assert watch.matching(alert_labels(view(hostile + " "))) == [silence]

    html = render.alert_feed([view(hostile, alert_id="x"), view("quiet-01", alert_id="y")],
                             datetime.now(UTC), silences=watch)
    noisy, quiet = html.split('data-alert="y"')
    assert 'class="alert-row sev-critical silenced"' in noisy and ">silenced</span>" in noisy
    assert f'data-silences="{silence.id}"' in noisy
    assert "silenced" not in quiet.split("alert-silence")[0] and ">silenced<" not in quiet
    # Every row offers the command; markup in ids and reasons stays text.
    assert html.count('class="alert-silence"') == 2
    assert "<b>" not in html and "<script>" not in html and "<i>" not in html
    assert "&lt;b&gt;&quot;01&quot;&lt;/b&gt;" in html


def test_a_regex_or_negative_silence_is_read_as_alertmanager_does(
        alertmanager: Alertmanager) -> None:
    for args in (["alertname=~thresh.*", "sensor!=keep-01"],):
        subprocess.run(["amtool", f"--alertmanager.url={alertmanager.url}", "silence", "add",
                        *args, "--comment=rule", "--author=test", "--duration=1h"],
                       check=True, capture_output=True, timeout=30)
    watch = SilenceWatch(alertmanager.url)
    with httpx.Client() as client:
        watch.poll(client)
    assert watch.matching(alert_labels(view("any-01")))
    assert not watch.matching(alert_labels(view("keep-01")))
    assert not watch.matching(alert_labels(view("any-01", rule="rate-of-change")))


def test_alertmanager_down_leaves_the_feed_as_it_was(alertmanager: Alertmanager) -> None:
    subprocess.run(["amtool", f"--alertmanager.url={alertmanager.url}", "silence", "add",
                    "sensor=noisy-01", "--comment=c", "--author=test", "--duration=1h"],
                   check=True, capture_output=True, timeout=30)
    watch = SilenceWatch(alertmanager.url)
    with httpx.Client() as client:
        watch.poll(client)
        assert watch.matching(alert_labels(view("noisy-01")))
        alertmanager.stop()
        watch.poll(client)
    assert not watch.reachable and watch.silences == () and watch.error
    rows, now = [view("noisy-01")], datetime.now(UTC)
    html = render.alert_feed(rows, now, silences=watch)
    assert html == render.alert_feed(rows, now)
    # Never configured / nothing listening: the same.
    nowhere = SilenceWatch(f"http://127.0.0.1:{free_port()}").start()
    try:
        assert not nowhere.wait_polled(timeout=2.0)
        assert render.alert_feed(rows, now, silences=nowhere) == html
    finally:
        nowhere.stop()


def test_the_ui_link_fills_in_the_sensor_matcher() -> None:
    url = silence_url("http://am:9093/", 'a"b')
    assert url == "http://am:9093/#/silences/new?filter=%7Bsensor%3D%22a%5C%22b%22%7D"
