"""Admin queries behind the dashboard's Kafka tab: brokers, topics, group lag, latest records.

A :class:`KafkaMonitor` per server process polls the cluster every few seconds in a
background thread with long-lived clients and keeps the last :class:`KafkaSnapshot`
plus a :class:`~sensorlib.dashboard.state.LagHistory`; sessions only read them, so ten
open tabs cost the cluster no more than one. The message browser's reads are cached
for a moment for the same reason.
"""

from __future__ import annotations

import contextlib
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from kafka import TopicPartition

from sensorlib.config import Settings
from sensorlib.dashboard.shared import PerSettings
from sensorlib.dashboard.state import LagHistory
from sensorlib.errors import UsageError
from sensorlib.kafka.clients import make_admin, make_consumer
from sensorlib.kafka.reader import TopicReader

__all__ = [
    "ASSIGNING_ROLES",
    "GroupLag",
    "KafkaMonitor",
    "KafkaSnapshot",
    "Record",
    "TopicInfo",
    "project_groups",
    "shared_monitor",
    "shown_topics",
]

#: Longest value shown in the message browser (the rest is cut, with an ellipsis).
MAX_VALUE_CHARS = 400


@dataclass(frozen=True)
class TopicInfo:
    """A topic's partitions with their first and next offsets."""

    name: str
    begin: dict[int, int]
    end: dict[int, int]

    @property
    def partitions(self) -> int:
        return len(self.end)

    @property
    def messages(self) -> int:
        """Records currently retained (offsets, so transaction markers count too)."""
        return sum(self.end[p] - self.begin.get(p, 0) for p in self.end)


@dataclass(frozen=True)
class GroupLag:
    """One consumer group on one topic: committed offset and lag per partition."""

    group: str
    role: str
    topic: str
    state: str
    members: int
    committed: dict[int, int | None]
    end: dict[int, int]

    def lag(self, partition: int) -> int:
        """Records the group has not committed yet (everything, if it never committed);
        never negative (a commit newer than the end offsets read is no lag)."""
        return max(0, self.end.get(partition, 0) - (self.committed.get(partition) or 0))

    @property
    def total_lag(self) -> int:
        return sum(self.lag(p) for p in self.end)


@dataclass(frozen=True)
class KafkaSnapshot:
    """What the Kafka tab shows, as of ``taken_at``."""

    taken_at: datetime
    cluster_id: str | None = None
    controller_id: int | None = None
    brokers: list[dict[str, Any]] = field(default_factory=list)
    topics: list[TopicInfo] = field(default_factory=list)
    groups: list[GroupLag] = field(default_factory=list)
    other_groups: int = 0
    error: str | None = None


@dataclass(frozen=True)
class Record:
    """One record as the message browser lists it (value decoded as text, shortened)."""

    topic: str
    partition: int
    offset: int
    timestamp: datetime
    key: str | None
    value: str


def shown_topics(settings: Settings) -> tuple[str, ...]:
    """The topics the Kafka tab lists and browses: the data flow's three, then the rule
    settings table and the injected-fault labels (those missing on the broker are left out)."""
    return (*settings.topics, settings.topic_rules, settings.topic_faults)


def project_groups(settings: Settings) -> list[tuple[str, str, str]]:
    """``(group, role, topic)`` of the consumer groups this project runs."""
    return [
        (settings.processor_group, "processor", settings.topic_readings),
        (settings.archiver_group, "archiver readings", settings.topic_readings),
        (settings.archiver_group, "archiver alerts", settings.topic_alerts),
        (settings.dashboard_readings_group, "dashboard readings", settings.topic_readings),
        (settings.dashboard_alerts_group, "dashboard alerts", settings.topic_alerts),
    ]


#: Roles whose group has no members by design: they assign their partitions themselves
#: (no rebalances) and only commit their position, so Kafka's own tools list the group as
#: ``Empty`` with no active members (the archiver's true position is in its tables).
ASSIGNING_ROLES = frozenset({"archiver readings", "archiver alerts", "dashboard readings",
                             "dashboard alerts"})


class KafkaMonitor:
    """Polls the cluster in the background; :attr:`snapshot` is always the latest view."""

    def __init__(self, settings: Settings, *, every: float = 3.0, history: LagHistory | None = None):
        self.settings = settings
        self.every = every
        self.history = history or LagHistory()
        self.snapshot = KafkaSnapshot(taken_at=datetime.now(UTC), error="not polled yet")
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._admin: Any = None
        self._consumer: Any = None
        self._browse_lock = threading.Lock()
        self._browse_cache: dict[tuple[str, str, int], tuple[float, list[Record]]] = {}

    # -- background polling -------------------------------------------------

    def start(self) -> KafkaMonitor:
        """Start polling (once)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="dashboard-kafka-monitor",
                                            daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop polling and close the clients."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
        self._close()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.poll_once()
            self._stop.wait(self.every)

    def _close(self) -> None:
        for client in (self._admin, self._consumer):
            # Closing a client of a broker that went away may fail too.
            with contextlib.suppress(Exception):
                if client is not None:
                    client.close()
        self._admin = self._consumer = None

    def poll_once(self) -> KafkaSnapshot:
        """Take a snapshot now (also what the thread does every ``every`` seconds)."""
        try:
            snapshot = self._take()
        except Exception as exc:  # noqa: BLE001 — shown in the tab, retried next time
            self._close()
            snapshot = KafkaSnapshot(taken_at=datetime.now(UTC), error=_short(exc))
        else:
            self.history.add(snapshot.taken_at, {g.role: g.total_lag for g in snapshot.groups})
        self.snapshot = snapshot
        return snapshot

    def _clients(self) -> tuple[Any, Any]:
        if self._admin is None:
            self._admin = make_admin(self.settings, client_id="sensorlib-dashboard-admin",
                                     request_timeout_ms=5000)
        if self._consumer is None:
            self._consumer = make_consumer(self.settings, client_id="sensorlib-dashboard-admin",
                                           request_timeout_ms=6000, metadata_max_age_ms=5000)
        return self._admin, self._consumer

    def _take(self) -> KafkaSnapshot:
        admin, consumer = self._clients()
        cluster = admin.describe_cluster()
        topics: list[TopicInfo] = []
        parts: dict[str, list[TopicPartition]] = {}
        for topic in shown_topics(self.settings):
            numbers = sorted(consumer.partitions_for_topic(topic) or [])
            parts[topic] = [TopicPartition(topic, p) for p in numbers]
        specs: dict[str, list[TopicPartition]] = {}
        for group, _, topic in project_groups(self.settings):
            specs.setdefault(group, []).extend(parts.get(topic, []))
        # Committed offsets first, end offsets after: a commit made in between then shows
        # as less lag, never as a negative one.
        committed = admin.list_group_offsets({g: tps for g, tps in specs.items() if tps})
        for topic, tps in parts.items():
            if not tps:
                continue
            begin = consumer.beginning_offsets(tps)
            end = consumer.end_offsets(tps)
            topics.append(TopicInfo(topic, {tp.partition: o for tp, o in begin.items()},
                                    {tp.partition: o for tp, o in end.items()}))
        ends = {t.name: t.end for t in topics}
        described = _describe(admin, list(specs))
        groups = []
        for group, role, topic in project_groups(self.settings):
            offsets = committed.get(group, {})
            info = described.get(group, {})
            groups.append(GroupLag(
                group=group, role=role, topic=topic,
                state=str(info.get("group_state") or "Dead"),
                members=len(info.get("members") or []),
                committed={tp.partition: (m.offset if m.offset >= 0 else None)
                           for tp, m in offsets.items() if tp.topic == topic},
                end=dict(ends.get(topic, {})),
            ))
        listed = {g["group_id"] for g in admin.list_groups()}
        return KafkaSnapshot(
            taken_at=datetime.now(UTC),
            cluster_id=cluster.get("cluster_id"),
            controller_id=cluster.get("controller_id"),
            brokers=[{k: b.get(k) for k in ("broker_id", "host", "port", "rack")}
                     for b in cluster.get("brokers", [])],
            topics=topics,
            groups=groups,
            other_groups=len(listed - set(specs)),
        )

    # -- message browser ----------------------------------------------------

    def latest_records(self, topic: str, *, sensor: str = "", limit: int = 50,
                       scan: int = 500, max_age: float = 1.5) -> list[Record]:
        """The newest ``limit`` records of ``topic``, newest first, optionally by sensor.

        ``sensor`` keeps records whose key contains it (case-insensitive); the last
        ``scan`` records of each partition are searched. Reads assign + seek, no group.
        """
        if topic not in shown_topics(self.settings):
            raise UsageError(f"not one of this project's topics: {topic!r}")
        key = (topic, sensor.strip().lower(), limit)
        with self._browse_lock:
            cached = self._browse_cache.get(key)
            if cached and time.monotonic() - cached[0] < max_age:
                return cached[1]
            records = _read_latest(self.settings, topic, key[1], limit, scan)
            if len(self._browse_cache) > 32:
                self._browse_cache.clear()
            self._browse_cache[key] = (time.monotonic(), records)
            return records


def _describe(admin: Any, groups: list[str]) -> dict[str, dict[str, Any]]:
    try:
        return dict(admin.describe_groups(groups))
    except Exception:  # noqa: BLE001 — a group that never existed is not an error here
        return {}


def _short(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) < 300 else text[:297] + "…"


def _read_latest(settings: Settings, topic: str, sensor: str, limit: int,
                 scan: int) -> list[Record]:
    found: list[Record] = []
    with TopicReader(settings, topic, last=scan, idle_timeout=5.0,
                     client_id="sensorlib-dashboard-browser", fetch_max_wait_ms=100,
                     request_timeout_ms=6000) as reader:
        for _, records in reader:
            found.extend(_record(topic, r) for r in records
                         if not sensor or sensor in (r.key or "").lower())
    found.sort(key=lambda r: (r.timestamp, r.partition, r.offset), reverse=True)
    return found[:limit]


def _record(topic: str, r: Any) -> Record:
    value = "" if r.value is None else r.value.decode("utf-8", errors="replace")
    if len(value) > MAX_VALUE_CHARS:
        value = value[: MAX_VALUE_CHARS - 1] + "…"
    return Record(topic=topic, partition=r.partition, offset=r.offset,
                  timestamp=datetime.fromtimestamp(r.timestamp / 1000, UTC),
                  key=r.key, value=value)


_MONITORS: PerSettings[KafkaMonitor] = PerSettings(lambda s: KafkaMonitor(s).start())


def shared_monitor(settings: Settings) -> KafkaMonitor:
    """The one running :class:`KafkaMonitor` of this process for ``settings``."""
    return _MONITORS.get(settings)
