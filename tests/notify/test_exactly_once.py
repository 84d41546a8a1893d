"""Exactly once, as a person sees it (issue 28, item 3): alerts on the topic reach a real
Alertmanager and from it a webhook and a mailbox, each alert once, through a SIGKILL of the
notifier, an Alertmanager restart and a broker outage; hostile alert text arrives escaped in
the e-mail's HTML and intact in the webhook's JSON; a silence stops notifications."""

from __future__ import annotations

import signal
import subprocess
import time
import uuid
from collections import Counter
from datetime import UTC, datetime

import httpx
import pytest

from sensorlib.config import Settings
from sensorlib.kafka.admin import ensure_topics
from sensorlib.kafka.broker import LocalKafka
from sensorlib.kafka.clients import make_producer
from sensorlib.model.events import Alert, alert_id
from tests.conftest import private_settings
from tests.notify.conftest import Alertmanager, Mailbox, Webhook, needs_alertmanager
from tests.support import Spawner, eventually

pytestmark = [pytest.mark.kafka, needs_alertmanager]

HOSTILE_REASON = ("<script>alert('x')</script><img src=x onerror=alert(1)> & \"quoted\"\r\n"
                  "Bcc: victim@example.com\r\n" + "very long reason " * 400)
HOSTILE_LOCATION = "<b>Lab</b> Subject: injected"


def make_alert(sensor: str, *, rule: str = "threshold", reason: str = "High temperature: 42.5°C",
               location: str = "Warehouse A") -> Alert:
    now = datetime.now(UTC)
    return Alert(alert_id=alert_id(sensor, rule, now), sensor_id=sensor, location=location,
                 temperature=42.5, humidity=50.0, timestamp=now, detected_at=now, rule=rule,
                 severity="critical", reason=reason)


def publish(settings: Settings, alerts: list[Alert]) -> None:
    producer = make_producer(settings)
    try:
        for alert in alerts:
            producer.send(settings.topic_alerts, key=alert.sensor_id, value=alert.to_json())
        producer.flush(timeout=30)
    finally:
        producer.close(timeout=5)


def ids_seen(webhook: Webhook) -> Counter[str]:
    return Counter(a["labels"]["alert_id"] for a in webhook.alerts())


@pytest.fixture
def notify_settings(own_kafka: LocalKafka, base_settings: Settings,
                    alertmanager: Alertmanager) -> Settings:
    if not own_kafka.running():
        own_kafka.start(timeout=120)
    settings = private_settings(base_settings, own_kafka.bootstrap_servers,
                                notification_group=f"notification-group-{uuid.uuid4().hex[:8]}",
                                alertmanager_url=alertmanager.url)
    ensure_topics(settings)
    return settings


def test_each_alert_reaches_people_once_through_kills_restarts_and_outages(
        notify_settings: Settings, alertmanager: Alertmanager, webhook: Webhook,
        mailbox: Mailbox, own_kafka: LocalKafka, spawn_notify: Spawner) -> None:
    settings = notify_settings
    sent: list[Alert] = []

    def phase(name: str, count: int) -> None:
        batch = [make_alert(f"{name}-{i:02d}") for i in range(count)]
        publish(settings, batch)
        sent.extend(batch)

    def all_arrived(timeout: float = 60) -> None:
        want = {a.alert_id for a in sent}
        eventually(lambda: want <= set(ids_seen(webhook)), timeout=timeout)
        eventually(lambda: len(mailbox.messages) >= len(want), timeout=timeout)

    notifier = spawn_notify("notify", settings)
    phase("calm", 5)
    all_arrived()

    # 1. The notifier killed (SIGKILL) while alerts flow; a new one takes over.
    phase("kill", 10)
    time.sleep(0.3)
    notifier.kill(signal.SIGKILL)
    phase("dead", 5)
    notifier = spawn_notify("notify", settings)
    all_arrived()

    # 2. Alertmanager restarted (SIGTERM: it keeps its notification log and silences);
    #    alerts published while it is down wait in Kafka, the notifier unhealthy meanwhile.
    alertmanager.stop()
    phase("am-down", 5)
    eventually(lambda: httpx.get(notifier.url + "/health").status_code == 503, timeout=30)
    reasons = httpx.get(notifier.url + "/health").json()["problems"]
    assert any("Alertmanager" in r for r in reasons), reasons
    alertmanager.start()
    all_arrived()
    eventually(lambda: httpx.get(notifier.url + "/health").status_code == 200, timeout=30)

    # 3. The broker stopped and started again.
    own_kafka.stop()
    time.sleep(3)
    own_kafka.start(timeout=120)
    phase("after-outage", 5)
    all_arrived(timeout=90)

    time.sleep(4)  # two group intervals: a duplicate would have been sent by now
    seen = ids_seen(webhook)
    firing_notifications = [b for b in webhook.bodies if b["status"] == "firing"]
    assert set(seen) == {a.alert_id for a in sent}, "an alert is missing"
    assert len(firing_notifications) == len(sent), (
        f"{len(firing_notifications)} webhook notifications for {len(sent)} alerts "
        f"(duplicates: {[k for k, n in seen.items() if n > 1]})")
    assert len(mailbox.messages) == len(sent)
    metrics = httpx.get(notifier.url + "/metrics").text
    assert "sensorlib_notify_sent_alerts_total" in metrics


def test_hostile_text_escaped_in_mail_and_intact_in_webhook(
        notify_settings: Settings, webhook: Webhook, mailbox: Mailbox,
        spawn_notify: Spawner) -> None:
    alert = make_alert("hostile-01", reason=HOSTILE_REASON, location=HOSTILE_LOCATION)
    spawn_notify("notify", notify_settings)
    publish(notify_settings, [alert])
    eventually(lambda: webhook.alerts() and mailbox.messages, timeout=60)
    got = webhook.alerts()[0]
    assert got["annotations"]["reason"] == HOSTILE_REASON  # intact, every byte
    assert got["labels"]["location"] == HOSTILE_LOCATION
    message = mailbox.messages[0]
    assert message["Bcc"] is None and "victim" not in str(message["Subject"])
    assert "\n" not in str(message["Subject"])
    html = next(part.get_payload(decode=True).decode()
                for part in message.walk() if part.get_content_type() == "text/html")
    assert "<script>" not in html and "<b>Lab</b>" not in html
    assert "&lt;script&gt;" in html
    assert [e.rcpt_tos for e in mailbox.envelopes] == [["ops@example.com"]]


def test_a_silence_stops_notifications_for_that_sensor(
        notify_settings: Settings, alertmanager: Alertmanager, webhook: Webhook,
        spawn_notify: Spawner) -> None:
    subprocess.run(["amtool", f"--alertmanager.url={alertmanager.url}", "silence", "add",
                    "sensor=noisy-01", "--comment=noisy sensor", "--author=test",
                    "--duration=1h"], check=True, capture_output=True)
    spawn_notify("notify", notify_settings)
    publish(notify_settings, [make_alert("noisy-01"), make_alert("quiet-01")])
    eventually(lambda: {a["labels"]["sensor"] for a in webhook.alerts()} == {"quiet-01"},
               timeout=60)
    time.sleep(3)
    assert {a["labels"]["sensor"] for a in webhook.alerts()} == {"quiet-01"}
    listed = httpx.get(f"{alertmanager.url}/api/v2/alerts").json()
    silenced = {a["labels"]["sensor"]: a["status"]["silencedBy"] for a in listed}
    assert silenced["noisy-01"] and not silenced["quiet-01"]
