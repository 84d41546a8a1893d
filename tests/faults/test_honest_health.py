"""Honest health (issue 23, item 6) against real brokers: the producer is unhealthy while its
sends are stalled and its simulator survives any Kafka error; the archiver is unhealthy while
the broker is frozen or down and waits out a full disk (a real, small tmpfs), exactly once.

A frozen broker (SIGSTOP) still accepts TCP connections: only the lack of answers shows it.
Brokers are frozen only on this module's own (``lone_kafka``), always resumed in a finally.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypeVar

import httpx
import pytest

from sensorlib.config import Settings
from sensorlib.history import query as history
from sensorlib.history.archiver import HEALTH_GRACE, STALL_AFTER, Archiver
from sensorlib.ingest.produce import ReadingProducer, SimulatorLoop
from sensorlib.ingest.simulate import Simulator
from sensorlib.kafka.broker import LocalKafka
from sensorlib.kafka.clients import make_producer
from sensorlib.kafka.ports import free_port
from tests.support import eventually, read_topic, service_env

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

T = TypeVar("T")


@contextlib.contextmanager
def frozen(kafka: LocalKafka) -> Iterator[None]:
    """The broker stopped with SIGSTOP (TCP still connects), always resumed afterwards."""
    pid = kafka.pid(kafka.nodes[0])
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


def when(get: Callable[[], T], ok: Callable[[T], object], timeout: float) -> T:
    """``get()``'s first value that is ``ok``, or fail after ``timeout`` seconds."""
    found: list[T] = []

    def check() -> bool:
        value = get()
        if ok(value):
            found.append(value)
            return True
        return False

    eventually(check, timeout=timeout)
    return found[0]


def _health(url: str) -> tuple[int | None, dict]:
    try:
        answer = httpx.get(url + "/health", timeout=5)
    except httpx.HTTPError:
        return None, {}
    return answer.status_code, answer.json()


def _publish(settings: Settings, n: int, start: datetime) -> None:
    producer = make_producer(settings, client_id="test-honest", linger_ms=20)
    try:
        for r in Simulator(seed=3, interval=1.0, start=start).stream(count=n):
            producer.send(settings.topic_readings, key=r.sensor_id, value=r.to_json())
        producer.flush(timeout=60)
    finally:
        producer.close(timeout=10)


# --------------------------------------------------------------------------- producer


def test_producer_is_unhealthy_while_sends_stall_and_recovers(
        lone_kafka: LocalKafka, lone: Settings, spawn) -> None:
    producer = spawn("producer", lone.replace(interval=0.5), env={"SENSORLIB_ACK_TIMEOUT": "2"})
    eventually(lambda: _health(producer.url)[1].get("simulated", 0) >= 10, timeout=60)
    reading = {"sensorId": "honest-1", "temperature": 21.0, "humidity": 50.0}
    with frozen(lone_kafka):
        answers: list[int] = []

        def post() -> None:
            answers.append(httpx.post(producer.url + "/api/events", json=reading,
                                      timeout=30).status_code)

        posts = [threading.Thread(target=post) for _ in range(8)]
        for thread in posts:
            thread.start()
        for thread in posts:
            thread.join(timeout=30)
        assert answers == [503] * 8  # not acknowledged within SENSORLIB_ACK_TIMEOUT
        # Both stalls show (the simulator's once its own flush has waited out its timeout).
        code, body = when(lambda: _health(producer.url),
                          lambda h: h[0] == 503 and "the simulator's sends are stalled"
                          in " ".join(h[1].get("problems", [])), timeout=30)
        assert code == 503 and body["status"] == "unhealthy"
        said = " ".join(body["problems"])
        assert "sends are stalled" in said and "8 reading(s) in flight" in said, said
        assert "the simulator's sends are stalled" in said, said
        time.sleep(3)  # still frozen: still unhealthy, and /health itself still answers
        assert _health(producer.url)[0] == 503
    # Resumed: the queued readings are acknowledged, health and the simulator come back.
    _, body = when(lambda: _health(producer.url), lambda h: h[0] == 200, timeout=60)
    assert body["simulator"]["state"] == "running"
    before = body["simulated"]
    eventually(lambda: _health(producer.url)[1].get("simulated", 0) > before + 10, timeout=30)
    assert httpx.post(producer.url + "/api/events", json=reading, timeout=10).status_code == 201


def test_simulator_survives_flush_timeouts_and_loses_nothing(
        lone_kafka: LocalKafka, lone: Settings) -> None:
    producer = ReadingProducer(lone, linger_ms=0)
    ticks: list[int] = []
    loop = SimulatorLoop(lone, producer, interval=0.2, flush_timeout=2.0,
                         on_batch=lambda batch: ticks.append(len(batch)))
    stop = threading.Event()
    thread = threading.Thread(target=loop.run, args=(stop,), daemon=True)
    thread.start()
    try:
        eventually(lambda: len(ticks) >= 5, timeout=30)
        with frozen(lone_kafka):
            # kafka-python's flush raises KafkaTimeoutError: the loop backs off and retries.
            eventually(lambda: loop.state == "retrying" and loop.failures >= 2, timeout=30)
            assert "KafkaTimeoutError" in (loop.last_error or "")
            problems = " ".join(loop.problems(ack_timeout=1.0))
            assert "paused" in problems and "sends are stalled" in problems, problems
            assert thread.is_alive()
            seen = len(ticks)
        eventually(lambda: loop.state == "running" and len(ticks) > seen + 5, timeout=60)
        assert loop.problems(ack_timeout=1.0) == []
    finally:
        stop.set()
        thread.join(timeout=30)
    assert not thread.is_alive() and loop.state == "stopped"
    producer.close(timeout=30)
    # Every reading of every tick, failed ones included, is stored (once: idempotent).
    stored = read_topic(lone, lone.topic_readings, committed_only=False, timeout=60)
    assert len(stored) == producer.sent


# --------------------------------------------------------------------------- status


def test_status_answers_within_5s_with_a_frozen_broker_and_a_hung_service(
        lone_kafka: LocalKafka, lone: Settings, tmp_path: Path) -> None:
    settings = lone.replace(warehouse_dir=tmp_path / "warehouse")
    hung = socket.create_server(("127.0.0.1", 0), backlog=16)  # accepts, never answers
    try:
        env = service_env(settings, SENSORLIB_PRODUCER_PORT=str(hung.getsockname()[1]),
                          SENSORLIB_PROCESSOR_PORT=str(free_port()),
                          SENSORLIB_ARCHIVER_PORT=str(free_port()),
                          SENSORLIB_DASHBOARD_PORT=str(free_port()))
        with frozen(lone_kafka):
            started = time.monotonic()
            done = subprocess.run([sys.executable, "-m", "sensorlib.cli", "status"], env=env,
                                  capture_output=True, text=True, timeout=30, check=False)
            took = time.monotonic() - started
    finally:
        hung.close()
    out = done.stdout
    assert took < 5.0, f"status took {took:.1f}s:\n{out}"
    assert done.returncode == 1, out + done.stderr
    assert f"kafka      {settings.bootstrap_servers}: NOT ANSWERING" in out, out
    assert "producer" in out and "NOT ANSWERING (no answer within" in out, out
    assert "processor" in out and ": not running" in out, out
    assert "Kafka gave no answer within" in out, out  # the consumer group lags


# --------------------------------------------------------------------------- archiver


def test_archiver_health_problems_need_their_grace() -> None:
    archiver = Archiver(Settings.from_env())
    now = time.monotonic()
    archiver.state, archiver.last_poll, archiver.answered = "running", now, now
    archiver.progress_at = now - STALL_AFTER / 2
    archiver.lag = {"sensor-readings": 40}
    assert archiver.problems(now) == []
    assert "40 record(s) wait" in " ".join(archiver.problems(now + STALL_AFTER))
    archiver.lag = {}
    archiver.commit_failed_since, archiver.commit_error = now, "CommitFailedError: x"
    assert archiver.problems(now + HEALTH_GRACE / 2) == []
    assert "group offsets not committed" in archiver.problems(now + HEALTH_GRACE + 1)[0]


def test_archiver_is_unhealthy_while_the_broker_is_frozen_or_down(
        lone_kafka: LocalKafka, lone: Settings, tmp_path: Path) -> None:
    settings = lone.replace(warehouse_dir=tmp_path / "warehouse")
    archiver = Archiver(settings, batch_rows=500, batch_seconds=0.5)
    stop = threading.Event()
    thread = threading.Thread(target=archiver.run, args=(stop,), daemon=True)
    thread.start()
    start = datetime.now(UTC) - timedelta(hours=1)

    def archived() -> int:
        return sum(t.archived for t in archiver.topics.values())

    try:
        _publish(settings, 300, start)
        eventually(lambda: archived() == 300 and archiver.health()[0], timeout=60)
        with frozen(lone_kafka):
            t0 = time.monotonic()
            _, body = when(archiver.health, lambda h: not h[0], timeout=40)
            assert "has not answered" in " ".join(body["problems"]), body
            assert body["kafka"] == "reachable"  # TCP connects: only the silence shows it
            assert time.monotonic() - t0 < 30
        eventually(lambda: archiver.health()[0], timeout=60)

        lone_kafka.kill_node(lone_kafka.nodes[0], signal.SIGKILL)
        _, body = when(archiver.health, lambda h: not h[0], timeout=20)
        assert f"Kafka is not reachable at {settings.bootstrap_servers}" in body["problems"]
        lone_kafka.start(timeout=120)
        eventually(lambda: archiver.health()[0], timeout=90)
        _publish(settings, 200, start + timedelta(minutes=10))
        eventually(lambda: archived() == 500, timeout=60)
    finally:
        stop.set()
        thread.join(timeout=60)
    assert archiver.state == "stopped"


# --------------------------------------------------------------------------- a full disk


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A real 24 MiB tmpfs (root and mount needed; skipped otherwise)."""
    where = tmp_path / "disk"
    where.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(where)],
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield where
    finally:
        if subprocess.run(["umount", str(where)], check=False).returncode != 0:
            subprocess.run(["umount", "-l", str(where)], check=False)


def _fill(folder: Path) -> Path:
    """Fill the file system of ``folder`` to the last byte with one ballast file."""
    ballast = folder / "ballast"
    chunk = b"\0" * (1 << 16)
    with open(ballast, "wb", buffering=0) as out:
        with contextlib.suppress(OSError):
            while True:
                out.write(chunk)
        with contextlib.suppress(OSError):
            while True:
                out.write(b"\0" * 512)
    return ballast


def test_archiver_waits_out_a_full_disk_and_resumes_exactly_once(
        topics: Settings, small_disk: Path, tmp_path: Path) -> None:
    settings = topics.replace(warehouse_dir=small_disk / "warehouse")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "archiver.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "sensorlib.cli", "archive", "--port", str(port),
             "--batch-rows", "1000", "--batch-seconds", "0.3"],  # the writer is a process
            env=service_env(settings), stdout=out, stderr=subprocess.STDOUT)
    start = datetime.now(UTC) - timedelta(hours=2)
    try:
        _publish(settings, 2000, start)
        eventually(lambda: _archived(url) == 2000, timeout=90)
        ballast = _fill(small_disk)
        _publish(settings, 3000, start + timedelta(hours=1))
        _, body = when(lambda: _health(url),
                       lambda h: h[0] == 503 and h[1].get("restarts", 0) >= 2, timeout=60)
        said = " ".join(body["problems"])
        assert "No space left on device" in said or "disk is full" in said, said
        assert "restarts from the tables' snapshots" in said, said
        assert proc.poll() is None  # waiting it out, not exited
        ballast.unlink()
        eventually(lambda: _archived(url) == 5000 and _health(url)[0] == 200, timeout=90)
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=60)
    assert code == 0, log.read_text()[-3000:]
    text = log.read_text()
    assert "restarting from the tables' snapshot offsets" in text, text[-3000:]
    table = history.load_table(settings, history.READINGS)
    assert table is not None
    rows = table.scan().to_arrow()
    coords = list(zip(rows["kafka_partition"].to_pylist(), rows["kafka_offset"].to_pylist(),
                      strict=True))
    assert len(coords) == len(set(coords)) == 5000, "lost or archived twice"


def _archived(url: str) -> int:
    _, body = _health(url)
    return sum(t.get("archived", 0) for t in body.get("tables", {}).values())
