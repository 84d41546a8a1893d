"""Fault labels as they travel: settled once their spans are known, encoded for the
``sensor-faults`` topic and decoded by the archiver (pure)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pandas as pd

from sensorlib.history.faults import FAULT_DTYPES, decode_faults
from sensorlib.history.query import FAULTS, KINDS
from sensorlib.ingest.simulate import (
    REFERENCE_FLEET,
    FaultLabel,
    FaultRates,
    Simulator,
    labels_to_frame,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)
BUSY = FaultRates(spike=0.02, stuck=0.02, silent=0.01, drift=1e-3)


def test_settled_labels_hand_out_every_label_once_and_only_once_its_span_is_known() -> None:
    sim = Simulator(seed=4, interval=2.0, start=T0, faults=BUSY)
    handed: list[FaultLabel] = []
    for tick in range(3000):
        t = T0 + timedelta(seconds=2 * tick)
        sim.readings_at(t)
        new = sim.settled_labels()
        # A label handed out no longer changes: its spell is over (or was planned whole).
        for label in new:
            assert label.end <= t or label.kind in ("silent", "drift")
        handed += new
    # Nothing handed out is changed afterwards, and the final call hands out the rest.
    assert handed == sim.labels[:len(handed)]
    handed += sim.settled_labels(final=True)
    assert handed == sim.labels
    assert sim.settled_labels(final=True) == []
    kinds = {label.kind for label in handed}
    assert kinds == {"spike", "stuck", "silent", "drift"}, kinds
    # While a stuck spell goes on, it and the labels after it wait.
    sim = Simulator(REFERENCE_FLEET[:1], seed=1, interval=2.0, start=T0, faults=FaultRates(
        spike=0.0, stuck=1.0, silent=0.0, drift=0.0, stuck_readings=(5, 5)))
    sim.readings_at(T0)
    assert sim.labels and sim.settled_labels() == []
    for k in range(1, 5):
        sim.readings_at(T0 + timedelta(seconds=2 * k))
    (label,) = sim.settled_labels()
    assert (label.kind, label.end) == ("stuck", T0 + timedelta(seconds=8))


def test_the_wire_format_round_trips_through_the_archiver_s_decoder() -> None:
    sim = Simulator(seed=2, interval=2.0, start=T0, faults=BUSY)
    list(sim.stream(duration=3600))
    labels = sim.settled_labels(final=True)
    assert len(labels) > 50
    frame = decode_faults([label.to_json() for label in labels])
    assert frame["_reason"].isna().all()
    expected = labels_to_frame(labels).astype(FAULT_DTYPES)
    pd.testing.assert_frame_equal(frame.drop(columns="_reason"), expected)
    # The table's columns name the frame's.
    assert set(FAULTS.to_frame.values()) >= set(FAULT_DTYPES) and FAULTS in KINDS


def test_bad_records_are_refused_with_the_field_and_why() -> None:
    good = FaultLabel("drift", "s1", T0, T0 + timedelta(hours=2), -1.5)
    body = json.loads(good.to_json())

    def variant(**changes: object) -> bytes:
        return json.dumps({**body, **changes}).encode()

    frame = decode_faults([good.to_json(), None, b"", b"[1]", variant(kind="melt"),
                           variant(sensorId=" "), variant(start="yesterday"),
                           variant(end="2026-01-01T00:00:00"),
                           variant(end=(T0 - timedelta(seconds=1)).isoformat()),
                           variant(detail="x"), variant(detail=float("inf"))])
    assert frame["_reason"].tolist() == [
        None, "body: not a JSON object (tombstone)", ("body: not JSON (Expecting value: line 1 "
                                                      "column 1 (char 0))"), "body: not a JSON object",
        "kind: not one of spike, stuck, silent, drift", "sensorId: missing or blank",
        "start: not an ISO 8601 time", "end: not an ISO 8601 time with a UTC offset",
        "end: before start", "detail: not a finite number", "detail: not a finite number"]
    assert frame.loc[0, "detail"] == -1.5 and frame.loc[0, "end"] == pd.Timestamp(
        T0 + timedelta(hours=2))
    assert decode_faults([]).empty


def test_odd_label_records_are_refused_with_a_reason_and_never_raise() -> None:
    """The archiver decodes whatever the ``sensor-faults`` topic holds: each odd record gets
    a reason (archived as refused), the good one decodes."""
    from sensorlib.history.faults import decode_faults

    good = (b'{"kind":"spike","sensorId":"a","start":"2026-01-01T00:00:00Z",'
            b'"end":"2026-01-01T00:01:00Z"}')
    odd = [None, b"\xff", b"[" * 5000, b"x" * 20_000,
           good.replace(b"2026-01-01T00:00:00Z", b"0001-01-01T00:00:00Z"),
           good.replace(b"2026-01-01T00:01:00Z", b"9999-12-31T23:59:59Z"),
           good.replace(b'"a"', '"a\u202e"'.encode()),
           good[:-1] + b',"detail":' + b"9" * 500 + b"}",
           good[:-1] + b',"detail":NaN}',
           good.replace(b"spike", b"<script>"),
           good.replace(b"00:01:00Z", b"00:00:00+99:00")]
    frame = decode_faults([*odd, good])
    reasons = list(frame["_reason"])
    assert all(reasons[:-1]) and reasons[-1] is None, reasons
    assert all(len(r) < 300 for r in reasons[:-1])
