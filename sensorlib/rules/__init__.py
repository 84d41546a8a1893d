"""Anomaly rules, one module each, and the registry the detector dispatches through.

A rule is one class (a subclass of :class:`Rule`) holding:

- ``name``: as it appears in ``Alert.rule``;
- ``Settings``: a frozen dataclass of its typed settings, with defaults and docs;
- ``sees``: which readings it judges (:data:`EVERY` reading, late ones included; those in
  the sensor's :data:`WINDOW`; the in-order :data:`SEQUENCE` of a sensor's newest readings;
  or none, a :data:`TICK` rule that fires as event time passes);
- its per-sensor state (:meth:`Rule.start` makes it from the sensor's first reading);
- its single-reading check :meth:`Rule.update` and, side by side, its columnar check
  :meth:`Rule.update_many` over an in-order :class:`Run` of one sensor's readings (river's
  ``update``/``update_many`` pattern). Both return :class:`Finding` objects, which name the
  quantity the alert is about; the detector applies cooldowns and builds the alerts, so
  alert ids, order and cooldowns are the same whichever check ran.

The registry: the built-in rules, the rules of installed packages (entry-point group
``sensorlib.rules``, each entry a Rule subclass) and those added with :func:`register`
(e.g. from a notebook). ``tests/unit/test_rules_contract.py`` holds every registered rule's
two checks to the same findings and state.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any, ClassVar, Generic, NamedTuple, TypeVar

import numpy as np

from sensorlib.errors import UsageError

if TYPE_CHECKING:
    import pandas as pd

    from sensorlib.engine.detect import RuleConfig
    from sensorlib.model.events import Reading

__all__ = [
    "EVERY",
    "SEQUENCE",
    "TICK",
    "WINDOW",
    "Finding",
    "Knob",
    "Moments",
    "Rule",
    "Run",
    "get",
    "register",
    "registry",
    "span_text",
]

#: ``Rule.sees``: every reading, late ones included (they are real measurements).
EVERY = "every"
#: ``Rule.sees``: readings inside the sensor's window (not late), in order or not.
WINDOW = "window"
#: ``Rule.sees``: a sensor's readings newer than any before it, from its second one on.
SEQUENCE = "sequence"
#: ``Rule.sees``: no reading: the rule fires as event time passes (the silent rule).
TICK = "tick"

#: The window's moments before a reading: ``(count, temperature mean, temperature variance,
#: humidity mean, humidity variance)`` (:meth:`sensorlib.engine.windows.SensorWindow.moments`).
Moments = tuple[int, float, float, float, float]


class Finding(NamedTuple):
    """What a rule found in one reading; the detector turns it into an alert.

    ``quantity``: what the alert is about: ``"temperature"``, ``"humidity"``, both joined
    by ``+``, or ``""`` (a silence is about no value).
    """

    severity: str
    reason: str
    quantity: str


@dataclass(frozen=True, slots=True)
class Run:
    """An in-order run of one sensor's readings, as arrays (all newer than the sensor's
    last reading and its window's end), with the window's moments before each reading.

    ``count`` is the window's size before each reading; ``t_mean`` … ``h_var`` are its
    moments where ``count >= moments_from`` (the detector's :attr:`moments_from`) and
    meaningless elsewhere; None when no reading of the run has them.
    """

    sensor_id: str
    ts: np.ndarray  # int64 µs since the epoch, strictly increasing
    temperature: np.ndarray  # float64
    humidity: np.ndarray  # float64
    count: np.ndarray  # int64
    t_mean: np.ndarray | None = None
    t_var: np.ndarray | None = None
    h_mean: np.ndarray | None = None
    h_var: np.ndarray | None = None


@dataclass(frozen=True)
class Knob:
    """One rule's main setting for tuning sweeps: the :class:`~sensorlib.engine.detect.RuleConfig`
    field, the rule it drives, how to show it."""

    field: str
    rule: str
    label: str
    unit: str

    def show(self, value: Any) -> str:
        """``33 °C``, ``5 °C/min``, ``3σ``, ``20 readings``."""
        number = f"{value:g}" if isinstance(value, float) else str(value)
        return f"{number}{self.unit}" if self.unit in ("σ", "%") else f"{number} {self.unit}"


S = TypeVar("S")


class Rule(Generic[S]):
    """The base of every rule (see the module docstring). Subclasses set the class
    attributes and implement :meth:`update` and :meth:`update_many`."""

    #: As in ``Alert.rule``.
    name: ClassVar[str]
    #: A frozen dataclass of the rule's settings, each with a default.
    Settings: ClassVar[type]
    #: Which readings the rule judges: EVERY, WINDOW, SEQUENCE or TICK.
    sees: ClassVar[str] = WINDOW
    #: What its alerts can be about (a subset of ``{"temperature", "humidity"}``).
    quantities: ClassVar[frozenset[str]] = frozenset()
    #: Where its alerts come among one reading's alerts (lower first; ties by name).
    order: ClassVar[int] = 100
    #: Settings the contract test tries besides the defaults (sensitive ones, that fire).
    examples: ClassVar[tuple[Any, ...]] = ()
    #: Tuning knobs: label -> Knob (``sensorlib.notebook.tuning.KNOBS`` lists them all).
    knobs: ClassVar[Mapping[str, Knob]] = {}
    #: The event-time history a restarted processor must replay to rebuild this rule's state
    #: (None: the window plus two minutes, what every processor replays, is enough). A rule
    #: that learns over longer (``ml_score``) sets it, per instance from its settings; the
    #: processor replays the longest any rule in force asks, bounded by
    #: :data:`sensorlib.processor.warmup.MAX_WARMUP`.
    warmup: timedelta | None = None

    def __init__(self, settings: Any = None) -> None:
        self.settings = self.Settings() if settings is None else settings
        #: The window size from which :meth:`update` needs the moments (None: never).
        self.moments_from: int | None = None

    @classmethod
    def missing(cls) -> str | None:
        """None when the rule can run here; else why not and how to fix it (e.g. a package
        it needs is not installed). Turning such a rule on raises ``ConfigError``; the
        generic contract test skips it with this reason."""
        return None

    @classmethod
    def settings_from(cls, config: RuleConfig) -> Any:
        """This rule's settings in ``config`` (``config.rule_settings[name]``, or the
        defaults). The built-in rules read the flat RuleConfig fields instead."""
        return config.rule_settings.get(cls.name) or cls.Settings()

    @classmethod
    def quantities_of(cls, alerts: pd.DataFrame) -> pd.DataFrame:
        """Which quantity each of this rule's alerts (a frame of ``alerts_to_frame``'s
        columns) is about: boolean columns ``temperature`` and ``humidity``. By default
        :attr:`quantities`, the same for every alert; a rule whose alerts differ overrides it
        (an alert carries its :class:`Finding`'s quantity only in its own words, its reason,
        which only the rule that wrote it reads)."""
        import pandas as pd

        return pd.DataFrame({q: np.full(len(alerts), q in cls.quantities)
                             for q in ("temperature", "humidity")}, index=alerts.index)

    def start(self, ts: int, temperature: float, humidity: float) -> S | None:
        """The per-sensor state after its first reading (None: the rule keeps none)."""
        return None

    def update(self, state: S | None, reading: Reading, ts: int,
               moments: Moments | None) -> Finding | None:
        """Judge one reading (``ts`` its event time in µs; ``moments`` the window's before
        it, or None when the window holds fewer than :attr:`moments_from`). May update
        ``state`` in place."""
        raise NotImplementedError

    def update_many(self, state: S | None, run: Run
                    ) -> tuple[list[tuple[int, Finding]], S | None] | None:
        """Judge a run at once: the findings ``(position in the run, finding)`` in order and
        the state after the run, exactly as :meth:`update` reading by reading would leave
        them. Must not change ``state`` (return a new one). None: decline, the run then goes
        one reading at a time (e.g. a score too close to its limit to decide in arrays)."""
        raise NotImplementedError


_REGISTRY: dict[str, type[Rule[Any]]] = {}
_LOADED = False


def register(rule: type[Rule[Any]]) -> type[Rule[Any]]:
    """Add a rule class to the registry (usable as a class decorator); replaces a rule of
    the same name. Pipelines made afterwards can turn it on (``RuleConfig(rules=...)``)."""
    for attr in ("name", "Settings"):
        if not hasattr(rule, attr):
            raise TypeError(f"{rule.__qualname__} has no {attr!r}: not a Rule")
    if rule.sees not in (EVERY, WINDOW, SEQUENCE, TICK):
        raise UsageError(f"{rule.name}: sees must be one of every, window, sequence, tick")
    _REGISTRY[rule.name] = rule
    return rule


def _load() -> None:
    global _LOADED
    if _LOADED:
        return
    _LOADED = True
    from sensorlib.rules import ml_score, outlier, rate_of_change, silent, stuck, threshold  # noqa: F401

    for entry in entry_points(group="sensorlib.rules"):
        if entry.name not in _REGISTRY:
            register(entry.load())


def registry() -> dict[str, type[Rule[Any]]]:
    """Every registered rule class by name, in the order alerts of one reading come."""
    _load()
    return dict(sorted(_REGISTRY.items(), key=lambda item: (item[1].order, item[0])))


def get(name: str) -> type[Rule[Any]]:
    """The rule class named ``name`` (KeyError naming the known ones)."""
    rules = registry()
    if name not in rules:
        raise KeyError(f"unknown rule {name!r}; known: {sorted(rules)}")
    return rules[name]


def span_text(us: int) -> str:
    """A duration in µs as a reason shows it: ``850ms``, ``12s``, ``4.5 min``."""
    seconds = us / 1e6
    if seconds < 120:
        return f"{seconds:.0f}s" if seconds >= 1 else f"{seconds * 1000:.0f}ms"
    return f"{seconds / 60:.1f} min"
