"""Live dashboard state: bounded, thread-safe buffers of readings and alerts (no Kafka, no UI).

The background feed writes into one :class:`LiveState` per server process; every browser
session reads from it: :meth:`LiveState.board` picks the page of sensors it shows (worst
first, filtered, paginated: a thousand sensors cost the browser one page of cards) and
:meth:`LiveState.samples` hands back only the sparkline points a card has not seen yet.
Memory is bounded by construction: a per-sensor deque that is both time-bounded (the
window) and count-bounded, a capped number of sensors (least recently updated evicted
first) and a capped alert feed.

A sensor's status is its last reading's (the reference rules: critical, warning,
normal; and at least ``warning`` above its own threshold rule's limits, the severity of the
alert the processor raises for it, e.g. a Cold Storage sensor at 12 °C) until no reading has *arrived* for ``stale_after`` by the wall clock; then it is
``stale``. Arrival is when the dashboard received the record (for records read back at
start-up, the broker's timestamp), not the reading's own event time: a producer with a
skewed clock must not make its sensors look silent.
"""

from __future__ import annotations

import bisect
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from sensorlib.engine.recent import RecentById
from sensorlib.errors import UsageError
from sensorlib.model.events import status_of

if TYPE_CHECKING:
    from sensorlib.engine.detect import RuleConfig
    from sensorlib.model.events import Alert, Reading

__all__ = [
    "STATUSES",
    "AlertView",
    "Board",
    "Counts",
    "KafkaStatus",
    "LagHistory",
    "LiveState",
    "Sample",
    "SensorView",
    "default_stale_after",
    "relative_time",
    "select_sensors",
    "utc_now",
]

Clock = Callable[[], datetime]

#: Every status a card can have, worst first (the order of the board).
STATUSES = ("critical", "warning", "stale", "normal")
_RANK = {status: rank for rank, status in enumerate(STATUSES)}
#: How many recent changes keep the time they were made (push latency).
CHANGE_TIMES = 4096


def default_stale_after(interval: float) -> timedelta:
    """How long without a reading before a sensor is stale: 3 intervals, at least 10 s.

    >>> default_stale_after(2.0), default_stale_after(30.0)
    (datetime.timedelta(seconds=10), datetime.timedelta(seconds=90))
    """
    return timedelta(seconds=max(3 * interval, 10.0))


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
    """What a sensor card shows.

    ``status`` is what the card says: ``value_status`` (the last reading's, by the
    reference rules, raised to ``warning`` above the sensor's own ``alert_above``) or ``"stale"`` once nothing arrived for ``stale_after``.
    ``arrived`` is when the last reading reached the dashboard (wall clock).
    """

    sensor_id: str
    location: str
    temperature: float
    humidity: float
    timestamp: datetime
    status: str
    version: int
    samples: int
    value_status: str = "normal"
    arrived: datetime | None = None
    #: The threshold rule's limits in force for this sensor (°C, %), from the
    #: ``sensor-rules`` table (:meth:`LiveState.set_rules`); None: not known yet.
    alert_above: tuple[float, float] | None = None
    #: The version of that table (as alerts carry it in ``rulesVersion``).
    rules_version: str | None = None


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
    #: The W3C trace id of the alert's record (its ``traceparent`` header), if it had one.
    trace_id: str | None = None


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

    __slots__ = ("arrived", "location", "reset_seq", "samples", "sensor_id", "version")

    def __init__(self, sensor_id: str, location: str, maxlen: int, arrived: datetime) -> None:
        self.sensor_id = sensor_id
        self.location = location
        self.samples: deque[Sample] = deque(maxlen=maxlen)
        self.version = 0
        # A session that saw less than reset_seq must redraw rather than append.
        self.reset_seq = 0
        self.arrived = arrived

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


class LiveState:
    """Everything the live view shows, shared by every browser session of one server.

    Args:
        window: how much history each sensor keeps (its sparklines), by event time.
        max_samples: per-sensor cap, whatever the rate.
        max_sensors: cap on distinct sensors; the least recently updated one goes first.
        max_alerts: length of the alert feed.
        stale_after: a sensor with no reading arriving for this long is ``stale``.
        clock: the wall clock (arrival of readings, staleness, the Kafka status).
    """

    def __init__(
        self,
        *,
        window: timedelta = timedelta(minutes=5),
        max_samples: int = 3000,
        max_sensors: int = 2000,
        max_alerts: int = 200,
        stale_after: timedelta = timedelta(seconds=10),
        clock: Clock = utc_now,
    ) -> None:
        if stale_after <= timedelta(0):
            raise UsageError(f"stale_after must be positive, got {stale_after}")
        self.window = window
        self.max_samples = max_samples
        self.max_sensors = max_sensors
        self.stale_after = stale_after
        self.clock = clock
        self._lock = threading.Lock()
        self._seq = 0
        self._series: OrderedDict[str, _Series] = OrderedDict()
        # The feed keeps the newest alerts by detection time, each id once.
        self._alerts: RecentById[AlertView] = RecentById(
            max_alerts, key=lambda a: a.alert_id, order=_alert_order)
        self._alerts_version = 0
        self._readings_total = 0
        self._alerts_total = 0
        self._severity_total = {"critical": 0, "warning": 0}
        self._invalid = 0
        self._kafka = KafkaStatus()
        # (seq, time.monotonic()) of the latest changes: how long a change waited for a push.
        self._changes: deque[tuple[int, float]] = deque(maxlen=CHANGE_TIMES)
        # The rule settings in force (set_rules) and each (sensor, location)'s thresholds.
        self._rules: RuleConfig | None = None
        self._rules_version: str | None = None
        self._limits: dict[tuple[str, str], tuple[float, float]] = {}

    # -- writers (the feed threads) -----------------------------------------

    def add_reading(self, reading: Reading, arrived: datetime | None = None) -> None:
        """Record a reading (any order; late ones are slotted in by event time).

        ``arrived`` is when it reached us (default: the clock, now); the feed passes the
        broker's timestamp for records read back at start-up.
        """
        now = self.clock()
        arrived = now if arrived is None else min(arrived, now)
        with self._lock:
            self._seq += 1
            self._changes.append((self._seq, time.monotonic()))
            series = self._series.get(reading.sensor_id)
            if series is None:
                series = _Series(reading.sensor_id, reading.location, self.max_samples, arrived)
                self._series[reading.sensor_id] = series
                while len(self._series) > self.max_sensors:
                    self._series.popitem(last=False)
            else:
                self._series.move_to_end(reading.sensor_id)
                series.arrived = max(series.arrived, arrived)
            series.location = reading.location
            sample = Sample(self._seq, reading.timestamp, reading.temperature, reading.humidity)
            series.add(sample, self.window)
            self._readings_total += 1

    def add_alert(self, alert: Alert, trace_id: str | None = None) -> bool:
        """Record an alert; False when its id was already in the feed (a replay).

        ``trace_id``: the trace its record continues (the feed links it to the trace viewer).
        """
        with self._lock:
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
                trace_id=trace_id,
            )
            if not self._alerts.add(view):
                return False  # already in the feed (a replay)
            self._alerts_total += 1
            if view.severity in self._severity_total:
                self._severity_total[view.severity] += 1
            self._seq += 1
            self._changes.append((self._seq, time.monotonic()))
            self._alerts_version = self._seq
            return True

    def set_rules(self, rules: RuleConfig, version: str | None = None) -> None:
        """The rule settings in force (the ``sensor-rules`` table over the configured
        defaults): each card shows its sensor's thresholds from them."""
        with self._lock:
            self._rules, self._rules_version = rules, version
            self._limits = {}
            self._seq += 1
            self._changes.append((self._seq, time.monotonic()))

    def _limits_of(self, sensor_id: str, location: str) -> tuple[float, float] | None:
        """The threshold rule's limits for one sensor (cached until the settings change, and
        bounded: the key holds the location, which a reading may change every time)."""
        if self._rules is None:
            return None
        key = (sensor_id, location)
        got = self._limits.get(key)
        if got is None:
            if len(self._limits) >= 2 * self.max_sensors:  # a sensor that keeps moving
                self._limits.clear()
            mine = self._rules.for_sensor(sensor_id, location)
            got = self._limits[key] = (mine.temperature_threshold, mine.humidity_threshold)
        return got

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

    def changed_since(self, version: int) -> float | None:
        """When (``time.monotonic()``) the oldest change after ``version`` was made.

        None when nothing changed since. For a version older than the changes remembered
        (the last :data:`CHANGE_TIMES`), the oldest remembered one: a lower bound of the wait.
        """
        with self._lock:
            if version >= self._seq or not self._changes:
                return None
            at = bisect.bisect_right(self._changes, version, key=lambda change: change[0])
            return self._changes[min(at, len(self._changes) - 1)][1]

    @property
    def alerts_version(self) -> int:
        """Grows when the alert feed changes."""
        return self._alerts_version

    @property
    def kafka(self) -> KafkaStatus:
        """The feed's view of Kafka."""
        return self._kafka

    def sensors(self, now: datetime | None = None) -> list[SensorView]:
        """One view per sensor, sorted by sensor id; stale ones as of ``now`` (the clock)."""
        stale_before = (self.clock() if now is None else now) - self.stale_after
        with self._lock:
            return [_sensor_view(s, stale_before, self._limits_of(s.sensor_id, s.location),
                                 self._rules_version)
                    for _, s in sorted(self._series.items()) if s.samples]

    def board(self, *, query: str = "", status: str = "all", page: int = 0,
              size: int = 24, now: datetime | None = None) -> Board:
        """One page of sensors, worst first, filtered (see :func:`select_sensors`)."""
        return select_sensors(self.sensors(now), query=query, status=status, page=page,
                              size=size)

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
            ordered = sorted(self._alerts.newest_first(), key=_alert_order, reverse=True)
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


def _sensor_view(series: _Series, stale_before: datetime,
                 limits: tuple[float, float] | None = None,
                 rules_version: str | None = None) -> SensorView:
    last = series.samples[-1]
    value_status = status_of(last.temperature, last.humidity)
    if (value_status == "normal" and limits is not None
            and (last.temperature > limits[0] or last.humidity > limits[1])):
        value_status = "warning"  # what the threshold rule raises for this sensor
    return SensorView(
        sensor_id=series.sensor_id,
        location=series.location,
        temperature=last.temperature,
        humidity=last.humidity,
        timestamp=last.timestamp,
        status="stale" if series.arrived < stale_before else value_status,
        version=series.version,
        samples=len(series.samples),
        value_status=value_status,
        arrived=series.arrived,
        alert_above=limits,
        rules_version=rules_version,
    )


@dataclass(frozen=True, slots=True)
class Board:
    """The page of sensor cards one session shows, and what the rest of the fleet is.

    ``views`` is the page (worst first); ``matched`` the sensors passing the filter,
    ``total`` all sensors; ``by_status`` counts all sensors per status; ``page`` is
    0-based and already clamped to ``pages``.
    """

    views: list[SensorView]
    total: int
    matched: int
    page: int
    pages: int
    size: int
    by_status: dict[str, int]

    @property
    def first(self) -> int:
        """1-based position of the first card shown (0 when none)."""
        return self.page * self.size + 1 if self.views else 0

    @property
    def last(self) -> int:
        """1-based position of the last card shown."""
        return self.page * self.size + len(self.views)

    @property
    def more(self) -> int:
        """Matching sensors not on this page."""
        return self.matched - len(self.views)


def _worst_first(view: SensorView) -> tuple[int, str]:
    return (_RANK.get(view.status, len(STATUSES)), view.sensor_id)


def select_sensors(views: Iterable[SensorView], *, query: str = "", status: str = "all",
                   page: int = 0, size: int = 24) -> Board:
    """Filter, order worst first (critical, warning, stale, normal; then by id) and paginate.

    ``query`` keeps sensors whose id or location contains it (case-insensitive);
    ``status`` is ``"all"`` or one of :data:`STATUSES`; ``page`` out of range is clamped.
    """
    if status != "all" and status not in _RANK:
        raise UsageError(f"status must be 'all' or one of {', '.join(STATUSES)}, got {status!r}")
    if size < 1:
        raise UsageError(f"size must be at least 1, got {size}")
    everything = list(views)
    by_status = dict.fromkeys(STATUSES, 0)
    for view in everything:
        by_status[view.status] = by_status.get(view.status, 0) + 1
    needle = query.strip().casefold()
    kept = [v for v in everything
            if (status == "all" or v.status == status)
            and (not needle or needle in v.sensor_id.casefold() or needle in v.location.casefold())]
    kept.sort(key=_worst_first)
    pages = max(1, -(-len(kept) // size))
    page = min(max(page, 0), pages - 1)
    return Board(views=kept[page * size:(page + 1) * size], total=len(everything),
                 matched=len(kept), page=page, pages=pages, size=size, by_status=by_status)


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
