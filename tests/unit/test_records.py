"""The fast record unpacking agrees with kafka-python's own, for every shape of batch.

Batches are built with kafka-python's own ``DefaultRecordBatchBuilder`` (what its producer
writes) and read both by kafka-python's ``DefaultRecordBatch`` iteration and by
:func:`sensorlib.kafka.records.unpack_batch`, and through ``FastPartitionRecords`` as the
fetcher would use it.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from kafka import TopicPartition
from kafka.consumer.fetcher import Fetcher
from kafka.errors import CorruptRecordError
from kafka.record.default_records import DefaultRecordBatch, DefaultRecordBatchBuilder
from kafka.record.memory_records import MemoryRecords

from sensorlib.kafka.records import FastPartitionRecords, as_raw, consumer_record, unpack_batch

TP = TopicPartition("t", 0)
GZIP = DefaultRecordBatch.CODEC_GZIP

nullable_bytes = st.none() | st.binary(max_size=300)
header = st.tuples(st.text(max_size=20), nullable_bytes)
record = st.tuples(
    st.integers(-10**6, 10**9),  # timestamp delta from the batch's first (can be negative)
    nullable_bytes,  # key
    nullable_bytes,  # value
    st.lists(header, max_size=3),
)


def build(records: list, *, base_offset: int = 0, compression: int = 0, log_append: bool = False,
          first_ts: int = 1_764_444_182_000, gap: int = 1) -> bytes:
    builder = DefaultRecordBatchBuilder(
        magic=2, compression_type=compression, is_transactional=0, producer_id=-1,
        producer_epoch=-1, base_sequence=-1, batch_size=1 << 30)
    for i, (delta, key, value, headers) in enumerate(records):
        builder.append(i * gap, timestamp=first_ts + delta if i else first_ts, key=key,
                       value=value, headers=headers)
    buf = builder.build()
    if log_append:  # what a LogAppendTime topic's broker rewrites: attributes bit 3, max ts
        buf[21:23] = (int.from_bytes(buf[21:23], "big") | 0x08).to_bytes(2, "big")
    buf[0:8] = base_offset.to_bytes(8, "big", signed=True)
    if log_append:  # keep the CRC right for the rewritten attributes
        from kafka.record.util import calc_crc32c
        buf[17:21] = calc_crc32c(memoryview(buf)[21:]).to_bytes(4, "big")
    return bytes(buf)


def kafka_python(buf: bytes) -> list[tuple]:
    return [(r.offset, r.timestamp, r.key, r.value, list(r.headers))
            for r in DefaultRecordBatch(buf)]


def fast(buf: bytes) -> list[tuple]:
    batch = DefaultRecordBatch(buf)
    batch._maybe_uncompress()
    body = bytes(batch._buffer)
    out: list = []
    end = unpack_batch(body, batch._pos, batch.records_count, batch.base_offset,
                       batch.first_timestamp,
                       batch.max_timestamp if batch.timestamp_type == 1 else None, out)
    assert end == len(body)
    return [(o, t, k, v, list(h)) for o, t, k, v, h in out]


@settings(max_examples=300, deadline=None)
@given(st.lists(record, min_size=1, max_size=40), st.integers(0, 2**40),
       st.sampled_from([0, GZIP]), st.booleans(), st.sampled_from([1, 3, 1000]))
def test_unpacking_agrees_with_kafka_python(records: list, base_offset: int, compression: int,
                                            log_append: bool, gap: int) -> None:
    buf = build(records, base_offset=base_offset, compression=compression,
                log_append=log_append, gap=gap)
    assert fast(buf) == kafka_python(buf)


def test_long_fields_take_multi_byte_varints() -> None:
    big = b"x" * 70_000  # a 3-byte varint length
    records = [(0, b"k" * 200, big, [("h" * 100, b"v" * 300)]), (10**9, None, None, []),
               (-5, b"", b"", [("", None)])]
    buf = build(records, base_offset=2**40, gap=1000)
    assert fast(buf) == kafka_python(buf)


def test_a_truncated_or_inconsistent_batch_is_corrupt_not_misread() -> None:
    buf = bytearray(build([(0, b"k", b"value", [])] * 3))
    with pytest.raises(CorruptRecordError):
        unpack_batch(bytes(buf[:-4]), 61, 3, 0, 0, None, [])
    buf[61] = 40  # the first record claims 20 bytes (zig-zag 40) it does not have
    with pytest.raises(CorruptRecordError):
        unpack_batch(bytes(buf), 61, 3, 0, 0, None, [])


def partition_records(buf: bytes, fetch_offset: int = 0) -> Fetcher.PartitionRecords:
    return FastPartitionRecords(fetch_offset, TP, MemoryRecords(buf))


def test_partition_records_take_several_batches_in_parts_and_keep_the_position() -> None:
    first = build([(i, b"a", f"v{i}".encode(), []) for i in range(5)], base_offset=10)
    second = build([(i, b"b", f"w{i}".encode(), [("eventId", b"e")]) for i in range(4)],
                   base_offset=15, compression=GZIP)
    part = partition_records(first + second, fetch_offset=12)  # starts inside the first batch
    got = part.take(4)
    assert [r[0] for r in got] == [12, 13, 14, 15]
    assert part.next_fetch_offset == 16
    rest = part.take(100)
    assert [r[0] for r in rest] == [16, 17, 18]
    assert rest[-1][3] == b"w3" and rest[-1][4] == [("eventId", b"e")]
    assert part.next_fetch_offset == 19
    assert not part  # drained
    assert part.records_read == 9


def test_a_corrupt_batch_fails_its_crc_check() -> None:
    buf = bytearray(build([(0, b"k", b"value", [])]))
    buf[-1] ^= 0xFF
    part = partition_records(bytes(buf))
    with pytest.raises(CorruptRecordError, match="crc"):
        part.take(10)


def test_raw_tuples_become_kafka_python_records_for_the_rare_paths() -> None:
    raw = (7, 1_764_444_182_000, b"sensor-01", b"{}", [("traceparent", b"00-ab")])
    record = consumer_record("readings", 2, raw)
    assert (record.topic, record.partition, record.offset, record.key, record.value,
            record.headers) == ("readings", 2, 7, "sensor-01", b"{}", [("traceparent", b"00-ab")])
    assert as_raw(raw) is raw
    assert as_raw(record) == (7, 1_764_444_182_000, "sensor-01", b"{}",
                              [("traceparent", b"00-ab")])


def test_install_self_tests_and_falls_back_when_the_fast_unpacking_breaks(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A changed private method of kafka-python must not crash every session: install()
    runs a self-test on a built batch and returns False on any exception or difference."""
    from sensorlib.kafka import records

    assert records.self_test()

    def broken(*args: object, **kwargs: object) -> int:
        raise AttributeError("'DefaultRecordBatch' object has no attribute '_pos'")

    monkeypatch.setattr(records, "unpack_batch", broken)
    assert not records.self_test()

    class Consumer:
        _fetcher = type("F", (), {"PartitionRecords": Fetcher.PartitionRecords})()

    consumer = Consumer()
    assert not records.install(consumer)  # type: ignore[arg-type]
    assert consumer._fetcher.PartitionRecords is Fetcher.PartitionRecords
    monkeypatch.undo()
    assert records.install(consumer)  # type: ignore[arg-type]
    assert consumer._fetcher.PartitionRecords is records.FastPartitionRecords


def test_the_self_test_covers_read_committed(monkeypatch: pytest.MonkeyPatch) -> None:
    """An aborted transaction and its marker, read_committed: a fast path that kept the
    aborted records (a changed ``_is_batch_aborted``, say) fails the self-test."""
    from sensorlib.kafka import records

    monkeypatch.setattr(records.FastPartitionRecords, "_is_batch_aborted",
                        lambda self, batch: False)
    assert not records.self_test()
    monkeypatch.undo()
    assert records.self_test()


def test_install_refuses_a_fetcher_of_another_shape() -> None:
    from sensorlib.kafka import records

    class Other:  # a fetcher whose partition class is not the one FastPartitionRecords extends
        PartitionRecords = type("PartitionRecords", (), {})

    consumer = type("C", (), {"_fetcher": Other()})()
    assert not records.install(consumer)  # type: ignore[arg-type]
    assert consumer._fetcher.PartitionRecords is not records.FastPartitionRecords
    assert not records.install(object())  # type: ignore[arg-type]  # no fetcher at all


def test_a_kafka_python_without_the_internals_imports_and_falls_back() -> None:
    """Were ``Fetcher.PartitionRecords`` gone, the processor must still import this module
    and run on kafka-python's own records (install says False)."""
    import subprocess
    import sys

    code = ("import kafka.consumer.fetcher as f\n"
            "del f.Fetcher.PartitionRecords\n"
            "from sensorlib.kafka import records\n"
            "consumer = type('C', (), {'_fetcher': object()})()\n"
            "assert records.install(consumer) is False\n"
            "assert records.consumer_record('t', 0, (1, 2, b'k', b'v', ())).offset == 1\n"
            "print('fell back')\n")
    done = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "fell back"
