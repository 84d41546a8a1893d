"""``sensorlib up --observe`` (issue 17): the real Zipkin server and, where Debian's package is
installed, the real Prometheus, started with the system; a POSTed reading's trace shows in
Zipkin across the producer and the processor, and Prometheus scrapes every target: the
producer, the processor, the archiver, the dashboard and the two viewers."""

from __future__ import annotations

import signal
import subprocess
import sys

import httpx
import pytest

from sensorlib.config import Settings
from sensorlib.errors import SensorlibError
from sensorlib.kafka.ports import free_port
from sensorlib.observe.viewers import (
    PROMETHEUS_MISSING,
    prometheus_config,
    prometheus_executable,
    resolve_zipkin,
)
from tests.support import eventually, service_env, wait_for_up

from .test_tracing import post, traceparent

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

#: Every target of the generated prometheus.yml: each service and both viewers.
WANTED = {"producer", "processor", "archiver", "dashboard", "zipkin", "prometheus"}


def test_prometheus_config_scrapes_each_target() -> None:
    text = prometheus_config({"producer": "127.0.0.1:8081", "zipkin": "127.0.0.1:9411"},
                             metrics_paths={"zipkin": "/prometheus"})
    yaml = pytest.importorskip("yaml")
    jobs = {j["job_name"]: j for j in yaml.safe_load(text)["scrape_configs"]}
    assert jobs["producer"]["metrics_path"] == "/metrics"
    assert jobs["producer"]["static_configs"] == [{"targets": ["127.0.0.1:8081"]}]
    assert jobs["zipkin"]["metrics_path"] == "/prometheus"


def test_up_observe_shows_one_trace_and_every_target_up(settings: Settings, tmp_path) -> None:
    try:
        resolve_zipkin(settings)
    except SensorlibError as exc:
        pytest.skip(f"the Zipkin server jar could not be fetched from Maven Central: {exc}")
    ports = {"SENSORLIB_PRODUCER_PORT": free_port(), "SENSORLIB_PROCESSOR_PORT": free_port(),
             "SENSORLIB_ARCHIVER_PORT": free_port(), "SENSORLIB_DASHBOARD_PORT": free_port(),
             "SENSORLIB_ZIPKIN_PORT": free_port(), "SENSORLIB_PROMETHEUS_PORT": free_port()}
    env = service_env(settings.replace(data_dir=tmp_path / "data"),
                      **{k: str(v) for k, v in ports.items()}, SENSORLIB_INTERVAL="0.5")
    env.pop("OTEL_EXPORTER_ZIPKIN_ENDPOINT", None)
    env.pop("OTEL_EXPORTER_OTLP_ENDPOINT", None)
    log = tmp_path / "up.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "sensorlib.cli", "up", "--observe"],
                                env=env, stdout=out, stderr=subprocess.STDOUT)
    zipkin = f"http://127.0.0.1:{ports['SENSORLIB_ZIPKIN_PORT']}"
    prometheus = f"http://127.0.0.1:{ports['SENSORLIB_PROMETHEUS_PORT']}"
    producer = f"http://127.0.0.1:{ports['SENSORLIB_PRODUCER_PORT']}"
    try:
        text = wait_for_up(proc, log, timeout=240)
        assert f"zipkin     {zipkin}/zipkin/" in text, text
        sent, trace_id, _ = traceparent()
        post(producer, "observed", sent)

        def spans() -> list[dict] | None:
            got = httpx.get(f"{zipkin}/api/v2/trace/{trace_id}", timeout=5)
            found = got.json() if got.status_code == 200 else []
            services = {s["localEndpoint"]["serviceName"] for s in found}
            ok = {"sensorlib-producer", "sensorlib-processor"} <= services
            return found if ok and len(found) >= 3 else None
        found = eventually(spans, timeout=90)
        assert len(found) >= 3
        status = subprocess.run([sys.executable, "-m", "sensorlib.cli", "status"], env=env,
                                capture_output=True, text=True, timeout=60, check=False)
        assert f"zipkin     {zipkin}/zipkin/: running" in status.stdout, status.stdout

        if prometheus_executable() is None:
            assert PROMETHEUS_MISSING in text
            assert "prometheus" in status.stdout and "not running" in status.stdout
            pytest.skip("Prometheus is not installed (apt-get install prometheus): the trace "
                        "was checked, the scrape was not")
        assert f"prometheus {prometheus}/" in text
        assert httpx.get(prometheus + "/", follow_redirects=True).status_code == 200  # the UI

        def all_up() -> dict[str, str] | None:
            answer = httpx.get(prometheus + "/api/v1/query", params={"query": "up"}, timeout=5)
            result = answer.json()["data"]["result"]
            jobs = {r["metric"]["job"]: r["value"][1] for r in result}
            return jobs if WANTED <= set(jobs) and set(jobs.values()) == {"1"} else None
        jobs = eventually(all_up, timeout=90, interval=1.0)
        assert set(jobs) == WANTED
        # The archiver's and the dashboard's own series are there too.
        for query in ("sensorlib_archive_rows_total", "sensorlib_dashboard_sessions"):
            def scraped(query: str = query) -> list | None:
                answer = httpx.get(prometheus + "/api/v1/query", timeout=5,
                                   params={"query": query}).json()
                return answer["data"]["result"] or None
            eventually(scraped, timeout=30, interval=1.0)
        # And Prometheus has the services' own series: the POST above is counted (by the
        # first scrape after it: "up" can come from a scrape taken before the POST).
        def counted() -> str | None:
            answer = httpx.get(prometheus + "/api/v1/query", timeout=5, params={
                "query": 'sensorlib_readings_accepted_total{source="api"}'}).json()
            result = answer["data"]["result"]
            return result[0]["value"][1] if result and result[0]["value"][1] != "0" else None
        assert eventually(counted, timeout=30, interval=1.0) == "1"
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=90)
    assert code == 0, log.read_text()
    assert "Stopped." in log.read_text()
