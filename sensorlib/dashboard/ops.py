"""The Ops tab's arithmetic on the services' own ``/metrics`` (pure functions, no I/O).

The Ops tab keeps no bookkeeping of its own: it scrapes the producer's, the processor's
and the archiver's ``GET /metrics`` (Prometheus text, parsed by
:func:`prometheus_client.parser.text_string_to_metric_families`) and computes what
Prometheus would: a counter's per-second rate between two scrapes (a counter that went
down means its service restarted: the new value is the increase, as Prometheus's
``rate`` does), and a quantile of a histogram from the increase of its cumulative
buckets, linearly interpolated inside the bucket that holds it
(``histogram_quantile``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from prometheus_client.parser import text_string_to_metric_families

from sensorlib.errors import UsageError

__all__ = [
    "Samples",
    "Scrape",
    "buckets",
    "counter_increase",
    "counter_rate",
    "histogram_quantile",
    "parse_metrics",
    "pick_window",
    "total",
    "window_quantile",
]

#: ``{(sample name, ((label, value), …) sorted): value}``: one scrape's samples.
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@dataclass(frozen=True)
class Scrape:
    """One scrape of one service: when (``time.time()``), what it said, or why it failed."""

    at: float
    samples: Samples = field(default_factory=dict)
    error: str | None = None

    @property
    def ok(self) -> bool:
        """Whether the scrape answered (its samples are meaningful)."""
        return self.error is None


def parse_metrics(text: str) -> Samples:
    """Every sample of a Prometheus text exposition, keyed by name and sorted labels.

    Raises ValueError on text that is not the Prometheus format.
    """
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = float(sample.value)
    return out


def _matches(labels: tuple[tuple[str, str], ...], wanted: Mapping[str, str]) -> bool:
    if not wanted:
        return True
    have = dict(labels)
    return all(have.get(k) == v for k, v in wanted.items())


def total(samples: Samples, name: str, **labels: str) -> float | None:
    """The sum of the samples called ``name`` whose labels include ``labels`` (None: none)."""
    found = [v for (n, ls), v in samples.items() if n == name and _matches(ls, labels)]
    return math.fsum(found) if found else None


def counter_increase(before: Samples, after: Samples, name: str, **labels: str) -> float | None:
    """How much a counter (summed over matching series) grew from ``before`` to ``after``.

    Per series, a value lower than before is a restart: the increase is the new value.
    A series new in ``after`` counts from 0. None when ``after`` has no such series.
    """
    grown: list[float] = []
    for (n, ls), value in after.items():
        if n != name or not _matches(ls, labels):
            continue
        old = before.get((n, ls), 0.0)
        grown.append(value - old if value >= old else value)
    return math.fsum(grown) if grown else None


def counter_rate(before: Scrape, after: Scrape, name: str, **labels: str) -> float | None:
    """A counter's per-second rate between two scrapes (None when it cannot be told)."""
    if not (before.ok and after.ok) or after.at <= before.at:
        return None
    grown = counter_increase(before.samples, after.samples, name, **labels)
    return None if grown is None else grown / (after.at - before.at)


def buckets(samples: Samples, name: str, **labels: str) -> list[tuple[float, float]]:
    """A histogram's cumulative buckets ``[(le, count), …]`` by ``le``, summed over the
    matching series (``name`` without ``_bucket``)."""
    summed: dict[float, float] = {}
    for (n, ls), value in samples.items():
        if n != f"{name}_bucket":
            continue
        have = dict(ls)
        le = have.pop("le", None)
        if le is None or not _matches(tuple(have.items()), labels):
            continue
        bound = float(le)  # "+Inf" parses as inf
        summed[bound] = summed.get(bound, 0.0) + value
    return sorted(summed.items())


def _bucket_increase(before: list[tuple[float, float]], after: list[tuple[float, float]]
                     ) -> list[tuple[float, float]]:
    old = dict(before)
    if any(count < old.get(le, 0.0) for le, count in after):
        return after  # the service restarted: everything it has is new
    return [(le, count - old.get(le, 0.0)) for le, count in after]


def histogram_quantile(q: float, cumulative: Iterable[tuple[float, float]]) -> float | None:
    """The ``q``-quantile (0..1) of a histogram given as cumulative ``(le, count)`` buckets.

    Prometheus's method: find the bucket holding rank ``q × count`` and interpolate
    linearly between its bounds (the first bucket starts at 0). A quantile in the
    ``+Inf`` bucket is the highest finite bound. None for an empty histogram.
    """
    if not 0.0 <= q <= 1.0:
        raise UsageError(f"a quantile is between 0 and 1, not {q}")
    rows = sorted(cumulative)
    if not rows or rows[-1][0] != math.inf or rows[-1][1] <= 0:
        return None
    count = rows[-1][1]
    rank = q * count
    lower, below = 0.0, 0.0
    for le, cum in rows:
        if cum >= rank and cum > below:
            if le == math.inf:
                return lower
            if rows[0][0] <= 0 and le == rows[0][0]:
                return le
            return lower + (le - lower) * (rank - below) / (cum - below)
        lower, below = le, cum
    return lower


def window_quantile(q: float, before: Scrape | None, after: Scrape, name: str,
                    **labels: str) -> float | None:
    """The ``q``-quantile of what a histogram observed between two scrapes (since the
    service started when ``before`` is None). None when nothing was observed."""
    if not after.ok:
        return None
    now = buckets(after.samples, name, **labels)
    if before is not None and before.ok:
        now = _bucket_increase(buckets(before.samples, name, **labels), now)
    return histogram_quantile(q, now)


def pick_window(history: list[Scrape], seconds: float) -> tuple[Scrape | None, Scrape | None]:
    """The successful scrapes to compute a rate over the last ``seconds``: the newest,
    and the oldest one at most ``seconds`` before it (or the oldest there is)."""
    good = [s for s in history if s.ok]
    if not good:
        return None, None
    newest = good[-1]
    inside = [s for s in good[:-1] if newest.at - s.at <= seconds]
    return (inside[0] if inside else (good[-2] if len(good) > 1 else None)), newest
