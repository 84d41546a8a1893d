"""Shared fixtures: one real Apache Kafka per test session, private topics per test.

The broker is the project's own :class:`sensorlib.kafka.broker.LocalKafka` on free ports in a
temporary folder, so tests never touch a user's broker on 9092. Set
``KAFKA_BOOTSTRAP_SERVERS`` to run the suite against a cluster of your own instead.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from sensorlib.config import Settings
from sensorlib.kafka.admin import ensure_topics
from sensorlib.kafka.broker import LocalKafka
from sensorlib.kafka.ports import free_port
from tests.support import Spawner

if TYPE_CHECKING:
    from sensorlib.history.postgres import LocalPostgres

#: Test folders whose every test is ``slow``: they start extra JVMs or clusters, kill and
#: restart services, execute notebooks or run a third-party client (see README "Tests").
SLOW_FOLDERS = frozenset({"faults", "notify", "notebooks", "interop", "install"})


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The tiers: ``unit`` for tests/unit (no broker, no browser), ``slow`` for
    :data:`SLOW_FOLDERS`; ``kafka`` and ``browser`` are set by the modules themselves."""
    root = Path(__file__).parent
    for item in items:
        try:
            folder = Path(item.path).relative_to(root).parts[0]
        except ValueError:
            continue
        if folder == "unit":
            item.add_marker(pytest.mark.unit)
        elif folder in SLOW_FOLDERS:
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def base_settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """Settings from the environment (jar cache, thresholds) before any test overrides,
    with a history archive of the session's own (tables are named after private topics)."""
    return Settings.from_env().replace(warehouse_dir=tmp_path_factory.mktemp("warehouse"),
                                       catalog_uri=None)


@pytest.fixture(scope="session")
def kafka_cluster(base_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Bootstrap servers of a real broker: the user's cluster, or one started here."""
    if os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        yield base_settings.bootstrap_servers
        return
    directory: Path = tmp_path_factory.mktemp("kafka")
    kafka = LocalKafka(
        directory,
        ports=[free_port()],
        controller_ports=[free_port()],
        settings=base_settings,
        heap="768m",
    )
    kafka.start(timeout=180)
    try:
        yield kafka.bootstrap_servers
    finally:
        kafka.stop()


def private_settings(base: Settings, bootstrap: str, **changes: object) -> Settings:
    """Settings on ``bootstrap`` with topic and group names nobody else uses."""
    suffix = uuid.uuid4().hex[:8]
    return base.replace(
        bootstrap_servers=bootstrap,
        external=True,
        topic_readings=f"sensor-readings-{suffix}",
        topic_alerts=f"sensor-alerts-{suffix}",
        topic_dlq=f"sensor-readings-dlq-{suffix}",
        topic_rules=f"sensor-rules-{suffix}",
        topic_faults=f"sensor-faults-{suffix}",
        processor_group=f"python-consumer-group-{suffix}",
        dashboard_readings_group=f"dashboard-readings-group-{suffix}",
        dashboard_alerts_group=f"dashboard-group-{suffix}",
        **changes,
    )


@pytest.fixture
def settings(base_settings: Settings, kafka_cluster: str) -> Settings:
    """Settings pointing at the test broker, with topic and group names private to this test."""
    return private_settings(base_settings, kafka_cluster)


@pytest.fixture
def topics(settings: Settings) -> Settings:
    """Like ``settings``, with the three topics already created."""
    ensure_topics(settings)
    return settings


# --------------------------------------------------------------------------- PostgreSQL


@pytest.fixture(scope="session")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalPostgres]:
    """A private PostgreSQL for the session: sensorlib's own :class:`LocalPostgres` (Debian's
    server programs) on a free port, without fsync; removed at the end. Skipped, saying what
    to install, when the programs are missing (CI installs them)."""
    from sensorlib.errors import DatabaseError
    from sensorlib.history.postgres import LocalPostgres, find_binaries
    from sensorlib.history.query import close_catalogs

    try:
        find_binaries()
    except DatabaseError as exc:
        pytest.skip(str(exc))
    db = LocalPostgres(tmp_path_factory.mktemp("postgres"), port=free_port(), durable=False)
    db.start()
    try:
        yield db
    finally:
        close_catalogs()
        db.remove()


@pytest.fixture
def pg_catalog_uri(postgres: LocalPostgres) -> Iterator[str]:
    """The SQLAlchemy URL of a fresh, empty database on the session's PostgreSQL (one per
    test, dropped after it): give it as ``Settings.catalog_uri``."""
    from sensorlib.history.query import close_catalogs

    name = f"t_{uuid.uuid4().hex[:12]}"
    yield postgres.create_database(name)
    close_catalogs()
    postgres.drop_database(name)


@pytest.fixture(params=["sqlite", "postgres"])
def history_catalog(request: pytest.FixtureRequest) -> str | None:
    """The archive's catalog, once each: None (the sqlite file in the warehouse) and a fresh
    PostgreSQL database. A test taking it (or a fixture built on it) runs on both."""
    if request.param == "sqlite":
        return None
    return str(request.getfixturevalue("pg_catalog_uri"))


# --------------------------------------------------------------------------- services

@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Spawner]:
    """Start services for one test."""
    spawner = Spawner(tmp_path)
    yield spawner
    spawner.stop_all()


@pytest.fixture(scope="module")
def spawn_module(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Spawner]:
    """Start services shared by one test module."""
    spawner = Spawner(tmp_path_factory.mktemp("services"))
    yield spawner
    spawner.stop_all()


# --------------------------------------------------------------------------- browser

#: Debian's Chromium (installed by .ci/run); Playwright drives it, never downloads one.
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    """One headless Chromium for the session (the Debian package; never downloaded)."""
    sync_api = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is not installed")
    with sync_api.sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()
