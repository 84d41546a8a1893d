"""Live dashboard state: bounded, thread-safe buffers of readings and alerts (no Kafka, no UI).

The background feed writes into one :class:`LiveState` per server process; every browser
session reads from it through its own :class:`SessionCursor`, which hands back only what
changed since that session last looked. Memory is bounded by construction: a per-sensor
deque that is both time-bounded (the window) and count-bounded, a capped number of
sensors (least recently updated evicted first) and a capped alert feed.
"""

from __future__ import annotations

import bisect
import threading
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from sensorlib.events import status_of

if TYPE_CHECKING:
    from sensorlib.events import Alert, Reading

__all__ = [
    "AlertView",
    "Counts",
    "KafkaStatus",
    "LagHistory",
    "LiveState",
    "Sample",
    "SensorView",
    "SessionCursor",
    "Update",
    "relative_time",
    "utc_now",
]

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    """The wall clock in UTC (the default clock; tests pass their own)."""
    return datetime.now(UTC)


def relative_time(then: datetime, now: datetime) -> str:
    """How long ago ``then`` was, for people: ``"just now"``, ``"12 s ago"``, ``"3 min ago"``.

    Times in the future (clock skew between a producer and us) read ``"in 4 s"``.

    >>> t = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
    >>> relative_time(t, t + timedelta(seconds=12))
    '12 s ago'
    >>> relative_time(t, t + timedelta(minutes=3, seconds=50))
    '3 min ago'
    """
    seconds = (now - then).total_seconds()
    if abs(seconds) < 1:
        return "just now"
    future = seconds < 0
    seconds = abs(seconds)
    if seconds < 60:
        text = f"{int(seconds)} s"
    elif seconds < 3600:
        text = f"{int(seconds // 60)} min"
    elif seconds < 86400:
        text = f"{int(seconds // 3600)} h"
    else:
        text = f"{int(seconds // 86400)} d"
    return f"in {text}" if future else f"{text} ago"


@dataclass(frozen=True, slots=True)
class Sample:
    """One reading of one sensor, as kept for its sparklines.

    ``seq`` is the state's global ingest counter: a session that has seen ``seq`` N
    needs exactly the samples with a larger ``seq``.
    """

    seq: int
    timestamp: datetime
    temperature: float
    humidity: float


@dataclass(frozen=True, slots=True)
class SensorView:
    """What a sensor card shows."""

    sensor_id: str
    location: str
    temperature: float
    humidity: float
    timestamp: datetime
    status: str
    version: int
    samples: int


@dataclass(frozen=True, slots=True)
class AlertView:
    """What one row of the alert feed shows."""

    alert_id: str
    sensor_id: str
    location: str
    severity: str
    reason: str
    rule: str
    temperature: float
    humidity: float
    timestamp: datetime
    detected_at: datetime


@dataclass(frozen=True, slots=True)
class Counts:
    """The header figures."""

    sensors: int
    readings_total: int
    readings_window: int
    alerts_total: int
    alerts_critical: int
    alerts_warning: int
    invalid: int


@dataclass(frozen=True, slots=True)
class KafkaStatus:
    """Whether the feed can reach Kafka, and since when it cannot."""

    ok: bool = True
    detail: str = ""
    since: datetime | None = None


class _Series:
    """One sensor's samples: ordered by event time, bounded by time and by count."""

    __slots__ = ("location", "reset_seq", "samples", "sensor_id", "touched", "version")

    def __init__(self, sensor_id: str, location: str, maxlen: int) -> None:
        self.sensor_id = sensor_id
        self.location = location
        self.samples: deque[Sample] = deque(maxlen=maxlen)
        self.version = 0
        # A session that saw less than reset_seq must redraw rather than append.
        self.reset_seq = 0
        self.touched = 0

    def add(self, sample: Sample, window: timedelta) -> None:
        samples = self.samples
        if not samples or sample.timestamp >= samples[-1].timestamp:
            samples.append(sample)
        else:
            # Late reading (another producer's clock, a replayed POST): keep time order.
            if len(samples) == samples.maxlen:
                samples.popleft()
            times = [s.timestamp for s in samples]
            samples.insert(bisect.bisect_right(times, sample.timestamp), sample)
            self.reset_seq = sample.seq
        newest = samples[-1].timestamp
        dropped = False
        while samples and samples[0].timestamp < newest - window:
            samples.popleft()
            dropped = True
        if dropped and not samples:
            self.reset_seq = sample.seq
        self.version = sample.seq
        self.touched = sample.seq


class LiveState:
    """Everything the live view shows, shared by every browser session of one server.

    Args:
        window: how much history each sensor keeps (its sparklines), by event time.
        max_samples: per-sensor cap, whatever the rate.
        max_sensors: cap on distinct sensors; the least recently updated one goes first.
        max_alerts: length of the alert feed.
        clock: the wall clock (for relative times and the Kafka status).
    """

    def __init__(
        self,
        *,
        window: timedelta = timedelta(minutes=5),
        max_samples: int = 3000,
        max_sensors: int = 200,
        max_alerts: int = 200,
        clock: Clock = utc_now,
    ) -> None:
        self.window = window
        self.max_samples = max_samples
        self.max_sensors = max_sensors
        self.clock = clock
        self._lock = threading.Lock()
        self._seq = 0
        self._series: OrderedDict[str, _Series] = OrderedDict()
        self._alerts: deque[AlertView] = deque(maxlen=max_alerts)
        self._alert_ids: set[str] = set()
        self._alerts_version = 0
        self._readings_total = 0
        self._alerts_total = 0
        self._severity_total = {"critical": 0, "warning": 0}
        self._invalid = 0
        self._kafka = KafkaStatus()

    # -- writers (the feed threads) -----------------------------------------

    def add_reading(self, reading: Reading) -> None:
        """Record a reading (any order; late ones are slotted in by event time)."""
        with self._lock:
            self._seq += 1
            series = self._series.get(reading.sensor_id)
            if series is None:
                series = _Series(reading.sensor_id, reading.location, self.max_samples)
                self._series[reading.sensor_id] = series
                while len(self._series) > self.max_sensors:
                    self._series.popitem(last=False)
            else:
                self._series.move_to_end(reading.sensor_id)
            series.location = reading.location
            sample = Sample(self._seq, reading.timestamp, reading.temperature, reading.humidity)
            series.add(sample, self.window)
            self._readings_total += 1

    def add_readings(self, readings: Iterable[Reading]) -> None:
        """Record several readings."""
        for reading in readings:
            self.add_reading(reading)

    def add_alert(self, alert: Alert) -> bool:
        """Record an alert; False when its id was already in the feed (a replay)."""
        with self._lock:
            if alert.alert_id in self._alert_ids:
                return False
            view = AlertView(
                alert_id=alert.alert_id,
                sensor_id=alert.sensor_id,
                location=alert.location,
                severity=alert.severity,
                reason=alert.reason,
                rule=alert.rule,
                temperature=alert.temperature,
                humidity=alert.humidity,
                timestamp=alert.timestamp,
                detected_at=alert.detected_at,
            )
            if len(self._alerts) == self._alerts.maxlen:
                oldest = min(self._alerts, key=_alert_order)
                self._alerts.remove(oldest)
                self._alert_ids.discard(oldest.alert_id)
            self._alerts.append(view)
            self._alert_ids.add(view.alert_id)
            self._alerts_total += 1
            if view.severity in self._severity_total:
                self._severity_total[view.severity] += 1
            self._seq += 1
            self._alerts_version = self._seq
            return True

    def note_invalid(self) -> None:
        """Count a record that could not be parsed (it is skipped, not shown)."""
        with self._lock:
            self._invalid += 1

    def set_kafka(self, ok: bool, detail: str = "") -> None:
        """Record whether Kafka answers; ``since`` keeps the first time it stopped."""
        with self._lock:
            if ok:
                self._kafka = KafkaStatus()
            elif self._kafka.ok:
                self._kafka = KafkaStatus(False, detail, self.clock())
            else:
                self._kafka = KafkaStatus(False, detail, self._kafka.since)

    # -- readers (the sessions) ---------------------------------------------

    @property
    def version(self) -> int:
        """Grows on every change; equal versions mean nothing changed."""
        return self._seq

    @property
    def alerts_version(self) -> int:
        """Grows when the alert feed changes."""
        return self._alerts_version

    @property
    def kafka(self) -> KafkaStatus:
        """The feed's view of Kafka."""
        return self._kafka

    def sensors(self) -> list[SensorView]:
        """One view per sensor, sorted by sensor id."""
        with self._lock:
            return [_sensor_view(s) for _, s in sorted(self._series.items()) if s.samples]

    def samples(self, sensor_id: str, after: int = 0) -> tuple[list[Sample], bool]:
        """The samples of ``sensor_id`` newer than ``after`` (a seq), and whether to redraw.

        ``full`` is True when the caller must replace what it has (it saw nothing yet,
        or a late reading was slotted in before its last sample); then every sample in
        the window is returned.
        """
        with self._lock:
            series = self._series.get(sensor_id)
            if series is None:
                return [], True
            if after == 0 or after < series.reset_seq:
                return list(series.samples), True
            new = []
            for sample in reversed(series.samples):
                if sample.seq <= after:
                    break
                new.append(sample)
            new.reverse()
            return new, False

    def window_samples(self, sensor_id: str) -> list[Sample]:
        """Every sample of ``sensor_id`` in the window (oldest first)."""
        return self.samples(sensor_id)[0]

    def alerts(self, limit: int | None = None) -> list[AlertView]:
        """The alert feed, newest first (by detection time)."""
        with self._lock:
            ordered = sorted(self._alerts, key=_alert_order, reverse=True)
        return ordered if limit is None else ordered[:limit]

    def counts(self) -> Counts:
        """Header figures, consistent with each other."""
        with self._lock:
            return Counts(
                sensors=len(self._series),
                readings_total=self._readings_total,
                readings_window=sum(len(s.samples) for s in self._series.values()),
                alerts_total=self._alerts_total,
                alerts_critical=self._severity_total["critical"],
                alerts_warning=self._severity_total["warning"],
                invalid=self._invalid,
            )


def _alert_order(alert: AlertView) -> tuple[datetime, str]:
    return (alert.detected_at, alert.alert_id)


def _sensor_view(series: _Series) -> SensorView:
    last = series.samples[-1]
    return SensorView(
        sensor_id=series.sensor_id,
        location=series.location,
        temperature=last.temperature,
        humidity=last.humidity,
        timestamp=last.timestamp,
        status=status_of(last.temperature, last.humidity),
        version=series.version,
        samples=len(series.samples),
    )


class LagHistory:
    """Total lag of each consumer group over the last minutes (for the Kafka view's chart).

    Bounded by time (``span``) and by count per group, so it stays small however long
    the dashboard runs.
    """

    def __init__(self, span: timedelta = timedelta(minutes=10), max_points: int = 600) -> None:
        self.span = span
        self._points: dict[str, deque[tuple[datetime, int]]] = {}
        self._max_points = max_points
        self._lock = threading.Lock()

    def add(self, at: datetime, lags: dict[str, int]) -> None:
        """Record each group's total lag at ``at``; forget groups no longer reported."""
        with self._lock:
            for group in [g for g in self._points if g not in lags]:
                del self._points[group]
            for group, lag in lags.items():
                points = self._points.setdefault(group, deque(maxlen=self._max_points))
                points.append((at, lag))
                while points and points[0][0] < at - self.span:
                    points.popleft()

    def series(self) -> dict[str, list[tuple[datetime, int]]]:
        """``{group: [(time, lag), …]}``, oldest first."""
        with self._lock:
            return {group: list(points) for group, points in self._points.items()}


@dataclass
class Update:
    """What one session must push: the cards and sparklines that changed."""

    sensors: list[SensorView] = field(default_factory=list)
    new_sensors: list[str] = field(default_factory=list)
    gone_sensors: list[str] = field(default_factory=list)
    samples: dict[str, tuple[list[Sample], bool]] = field(default_factory=dict)
    alerts_changed: bool = False

    @property
    def empty(self) -> bool:
        return not (self.sensors or self.gone_sensors or self.samples or self.alerts_changed)


class SessionCursor:
    """What one browser session has already been sent; :meth:`poll` returns the rest."""

    def __init__(self, state: LiveState) -> None:
        self.state = state
        self._version = -1
        self._alerts_version = -1
        self._seen: dict[str, int] = {}

    def poll(self) -> Update:
        """The changes since the previous call (cheap when nothing changed)."""
        update = Update()
        if self.state.version == self._version:
            return update
        self._version = self.state.version
        views = self.state.sensors()
        present = {v.sensor_id for v in views}
        update.gone_sensors = [sid for sid in self._seen if sid not in present]
        for sid in update.gone_sensors:
            del self._seen[sid]
        for view in views:
            last = self._seen.get(view.sensor_id)
            if last is None:
                update.new_sensors.append(view.sensor_id)
            if last is None or view.version > last:
                update.sensors.append(view)
                update.samples[view.sensor_id] = self.state.samples(view.sensor_id, last or 0)
                self._seen[view.sensor_id] = view.version
        if self.state.alerts_version != self._alerts_version:
            self._alerts_version = self.state.alerts_version
            update.alerts_changed = True
        return update
