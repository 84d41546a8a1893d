"""Alertmanager's silences for the dashboard's alert feed, polled in the background.

The alert feed marks an alert whose labels an active silence of Alertmanager matches (the
labels the notifier sends: ``alertname`` = rule, ``sensor``, ``location``, ``severity``,
``source="sensorlib"``, ``alert_id``), and offers to silence the alert's sensor: a link to
Alertmanager's UI (``#/silences/new`` with the sensor's matcher filled in) when it serves
one, else the equivalent ``amtool silence add`` command (Debian's
``prometheus-alertmanager`` ships no web UI, only ``amtool``).

One :class:`SilenceWatch` per dashboard process (:func:`shared_silences`) asks
``GET /api/v2/silences`` every :data:`POLL_EVERY` seconds with a short timeout and keeps
the answer; rendering only reads that copy, so an Alertmanager that is not running, slow
or unreachable never slows a page (the feed then simply shows no marks and no links).
"""

from __future__ import annotations

import logging
import re
import shlex
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx

from sensorlib.config import Settings

__all__ = ["Silence", "SilenceWatch", "alert_labels", "amtool_command", "shared_silences",
           "silence_url", "stop_shared_silences"]

log = logging.getLogger(__name__)

#: Seconds between two polls of Alertmanager's silences.
POLL_EVERY = 5.0
#: Seconds one poll may take.
TIMEOUT = 1.0


@dataclass(frozen=True, slots=True)
class Matcher:
    """One matcher of a silence (Alertmanager's semantics: a missing label is ``""``)."""

    name: str
    value: str
    regex: re.Pattern[str] | None
    equal: bool

    def matches(self, labels: Mapping[str, str]) -> bool:
        got = labels.get(self.name, "")
        hit = (self.regex.fullmatch(got) is not None) if self.regex is not None \
            else got == self.value
        return hit == self.equal


@dataclass(frozen=True, slots=True)
class Silence:
    """An active silence: its id, matchers, end, author and comment."""

    id: str
    matchers: tuple[Matcher, ...]
    ends_at: str
    created_by: str
    comment: str

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Whether every matcher matches ``labels`` (as Alertmanager decides)."""
        return bool(self.matchers) and all(m.matches(labels) for m in self.matchers)

    def describe(self) -> str:
        """One line for a tooltip."""
        rules = ", ".join(f"{m.name}{'' if m.equal else '!'}{'=~' if m.regex else '='}"
                          f"\"{m.value}\"" for m in self.matchers)
        return (f"Silenced in Alertmanager until {self.ends_at} by {self.created_by or '?'}: "
                f"{self.comment or '(no comment)'} [{rules}]")


def _silence(raw: Mapping[str, Any]) -> Silence | None:
    """A :class:`Silence` from ``GET /api/v2/silences`` JSON; None unless active and valid."""
    if (raw.get("status") or {}).get("state") != "active":
        return None
    matchers = []
    for m in raw.get("matchers") or ():
        name, value = str(m.get("name", "")), str(m.get("value", ""))
        pattern = None
        if m.get("isRegex"):
            try:
                pattern = re.compile(value)
            except re.error:
                return None  # a pattern Python's re cannot read: no mark rather than a wrong one
        matchers.append(Matcher(name, value, pattern, bool(m.get("isEqual", True))))
    return Silence(str(raw.get("id", "")), tuple(matchers), str(raw.get("endsAt", "")),
                   str(raw.get("createdBy", "")), str(raw.get("comment", "")))


def alert_labels(alert: Any) -> dict[str, str]:
    """The labels the notifier gives ``alert`` in Alertmanager (an
    :class:`~sensorlib.dashboard.state.AlertView` or :class:`~sensorlib.model.events.Alert`)."""
    from sensorlib.notify.payload import labels_of

    return labels_of(alert.rule, alert.sensor_id, alert.location, alert.severity,
                     alert.alert_id)


def _matcher_text(name: str, value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'{name}="{escaped}"'


def silence_url(alertmanager: str, sensor: str) -> str:
    """Alertmanager UI's "new silence" form for ``sensor`` (its matcher filled in)."""
    matcher = quote("{" + _matcher_text("sensor", sensor) + "}", safe="")
    return f"{alertmanager.rstrip('/')}/#/silences/new?filter={matcher}"


def amtool_command(alertmanager: str, sensor: str) -> str:
    """The ``amtool`` command silencing ``sensor`` for an hour (shell-quoted)."""
    return (f"amtool --alertmanager.url={shlex.quote(alertmanager.rstrip('/'))} silence add "
            f"--duration=1h --comment='noisy sensor' "
            f"{shlex.quote(_matcher_text('sensor', sensor))}")


class SilenceWatch:
    """Alertmanager's active silences, polled in a thread (see the module docstring)."""

    def __init__(self, alertmanager: str, *, every: float = POLL_EVERY,
                 timeout: float = TIMEOUT) -> None:
        self.url = alertmanager.rstrip("/")
        self.every = every
        self.timeout = timeout
        #: Whether the last poll got an answer (False: not running, unreachable, refusing).
        self.reachable = False
        #: Whether Alertmanager serves its web UI (Debian's package does not).
        self.has_ui = False
        self.error: str | None = None
        #: Bumped whenever what the feed shows may change (silences, reachability).
        self.version = 0
        self._silences: tuple[Silence, ...] = ()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._ui_checked = False

    @property
    def silences(self) -> tuple[Silence, ...]:
        """The active silences of the last successful poll."""
        return self._silences

    def matching(self, labels: Mapping[str, str]) -> list[Silence]:
        """The active silences that silence an alert with ``labels``."""
        return [s for s in self._silences if s.matches(labels)]

    def poll(self, client: httpx.Client) -> None:
        """Ask once (the thread's step; callable directly)."""
        try:
            answer = client.get(self.url + "/api/v2/silences", timeout=self.timeout)
            answer.raise_for_status()
            found = tuple(s for s in map(_silence, answer.json()) if s is not None)
            if not self._ui_checked:
                # The UI's script; Debian's build serves only a "no web UI" page at "/".
                script = client.get(self.url + "/script.js", timeout=self.timeout)
                self.has_ui = script.status_code == 200
                self._ui_checked = True
        except (httpx.HTTPError, ValueError, TypeError, AttributeError) as exc:
            if self.reachable or self.error is None:
                log.info("Alertmanager's silences at %s not read: %s", self.url,
                         type(exc).__name__)
            changed = self.reachable or bool(self._silences)
            self.reachable, self.error, self._silences = False, type(exc).__name__, ()
            self._ui_checked = False
        else:
            changed = not self.reachable or found != self._silences
            self.reachable, self.error, self._silences = True, None, found
        if changed:
            self.version += 1

    def _run(self) -> None:
        with httpx.Client() as client:
            while not self._stop.is_set():
                self.poll(client)
                self._stop.wait(self.every)

    def start(self) -> SilenceWatch:
        """Start polling (once)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="dashboard-silences",
                                            daemon=True)
            self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop polling."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def wait_polled(self, timeout: float = 10.0) -> bool:
        """Block until a poll reached Alertmanager (True) or ``timeout`` passed (tests)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.reachable:
                return True
            time.sleep(0.05)
        return False


_WATCHES: dict[str, SilenceWatch] = {}
_LOCK = threading.Lock()


def shared_silences(settings: Settings) -> SilenceWatch:
    """The one running :class:`SilenceWatch` of this process for ``settings``' Alertmanager."""
    with _LOCK:
        watch = _WATCHES.get(settings.alertmanager)
        if watch is None:
            watch = _WATCHES[settings.alertmanager] = SilenceWatch(settings.alertmanager).start()
        return watch


def stop_shared_silences() -> None:
    """Stop every shared watch (tests and clean shutdown)."""
    with _LOCK:
        watches = list(_WATCHES.values())
        _WATCHES.clear()
    for watch in watches:
        watch.stop()
