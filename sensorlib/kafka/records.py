"""Kafka record batches unpacked in one tight loop: the processor's fetch fast path.

kafka-python turns every fetched record into two objects (its ``DefaultRecord`` and then a
``ConsumerRecord`` named tuple of 13 fields), calling a deserializer and a CRC check
method per record on the way: about 4 µs of CPU per record, more than the whole reference
consumer spends. :func:`install` swaps, for one consumer, the class kafka-python uses to
unpack a fetched partition (``Fetcher.PartitionRecords``) for :class:`FastPartitionRecords`,
which keeps kafka-python's batch-level handling (CRC of each batch, decompression,
``read_committed`` skipping of aborted transactions and control batches, fetch positions)
and reads each v2 record's fields in one loop with the common one-byte varints inlined.
Each record then comes out of ``poll()`` as a plain tuple :data:`Raw`:
``(offset, timestamp, key, value, headers)``, about three times cheaper.

kafka-python stays the client: connections, fetch requests, the group protocol, offsets
and transactions are all its own. Only the unpacking of record bytes is replaced, and a
differential test (``tests/unit/test_records.py``) holds it to kafka-python's own result
for every shape of batch (keys, values and headers null or not, long varints, compressed,
log-append time). kafka-python is pinned; if its internals ever change shape,
:func:`install` returns False and the consumer keeps kafka-python's own records, which
:func:`as_raw` turns into the same tuples.
"""

from __future__ import annotations

import collections
import sys
from collections.abc import Iterator
from typing import Any

from kafka import KafkaConsumer
from kafka.errors import CorruptRecordError

# kafka-python's internals this module builds on. If a release moves any of them, importing
# this module must still work (the processor imports it): install() then says False and
# every consumer keeps kafka-python's own records.
try:
    from kafka.consumer.fetcher import Fetcher, IsolationLevel
    from kafka.record.util import decode_varint

    _BASE: type = Fetcher.PartitionRecords
    _READ_COMMITTED: Any = IsolationLevel.READ_COMMITTED
except (ImportError, AttributeError):  # pragma: no cover - only on another kafka-python
    _BASE, _READ_COMMITTED = object, object()

    def decode_varint(buffer: bytes, pos: int = 0) -> tuple[int, int]:
        """Never called: the fast path is not installed on this kafka-python."""
        raise CorruptRecordError("sensorlib.kafka.records is not usable here")
try:  # what poll() gives; the rare paths (dead letters, traces) build them from tuples
    from kafka.consumer.fetcher import ConsumerRecord
except ImportError:  # pragma: no cover - the same 13 fields, should kafka-python move it
    ConsumerRecord = collections.namedtuple(  # type: ignore[misc]
        "ConsumerRecord", ["topic", "partition", "leader_epoch", "offset", "timestamp",
                           "timestamp_type", "key", "value", "headers", "checksum",
                           "serialized_key_size", "serialized_value_size",
                           "serialized_header_size"])

__all__ = ["FastPartitionRecords", "Raw", "as_raw", "consumer_record", "install", "self_test",
           "unpack_batch"]

#: One record from a fast consumer's ``poll()``: ``(offset, timestamp ms, key bytes or
#: None, value bytes or None, headers)``, headers as kafka-python gives them
#: (``[(str, bytes | None)]``; an empty tuple when there are none).
Raw = tuple[int, int, bytes | None, bytes | None, Any]

_LOG_APPEND_TIME = 1
_NO_HEADERS: tuple[()] = ()
# What FastPartitionRecords relies on in kafka-python's class (checked by install).
_NEEDED = ("_consume_aborted_transactions_up_to", "_contains_abort_marker",
           "_is_batch_aborted", "drain", "_maybe_raise_next_inline_exception")


def unpack_batch(buf: bytes, pos: int, count: int, base_offset: int, first_ts: int,
                 log_append_ts: int | None, out: list[Raw]) -> int:
    """Append the ``count`` records of a (decompressed) v2 batch body to ``out``.

    ``buf[pos:]`` holds the records; ``log_append_ts`` is the batch's max timestamp when
    the topic stamps records at append time (then every record carries it), else None.
    Returns the position after the last record.

    Raises:
        CorruptRecordError: a record's length does not match its fields, or the buffer
            ends inside a record.
    """
    dv = decode_varint
    append = out.append
    try:
        for _ in range(count):
            # Record => Length Attributes TimestampDelta OffsetDelta Key Value Headers,
            # all but Attributes (int8) zig-zag varints; one or two bytes in the common case.
            # Each varint is decoded inline, not by a helper: a call per field would cost
            # more than the decoding (five fields, every record).
            b = buf[pos]
            if b < 128:
                length = (b >> 1) ^ -(b & 1)
                pos += 1
            elif buf[pos + 1] < 128:  # two bytes: values from -8192 to 8191
                b = (b & 0x7F) | (buf[pos + 1] << 7)
                length = (b >> 1) ^ -(b & 1)
                pos += 2
            else:
                length, pos = dv(buf, pos)
            end = pos + length
            pos += 1  # attributes: unused in v2
            b = buf[pos]
            if b < 128:
                ts_delta = (b >> 1) ^ -(b & 1)
                pos += 1
            elif buf[pos + 1] < 128:  # two bytes: values from -8192 to 8191
                b = (b & 0x7F) | (buf[pos + 1] << 7)
                ts_delta = (b >> 1) ^ -(b & 1)
                pos += 2
            else:
                ts_delta, pos = dv(buf, pos)
            b = buf[pos]
            if b < 128:
                offset_delta = (b >> 1) ^ -(b & 1)
                pos += 1
            elif buf[pos + 1] < 128:  # two bytes: from the 64th record of a batch on
                b = (b & 0x7F) | (buf[pos + 1] << 7)
                offset_delta = (b >> 1) ^ -(b & 1)
                pos += 2
            else:
                offset_delta, pos = dv(buf, pos)
            b = buf[pos]
            if b < 128:
                size = (b >> 1) ^ -(b & 1)
                pos += 1
            else:
                size, pos = dv(buf, pos)
            if size >= 0:
                key: bytes | None = buf[pos:pos + size]
                pos += size
            else:
                key = None
            b = buf[pos]
            if b < 128:
                size = (b >> 1) ^ -(b & 1)
                pos += 1
            elif buf[pos + 1] < 128:  # two bytes: values from -8192 to 8191
                b = (b & 0x7F) | (buf[pos + 1] << 7)
                size = (b >> 1) ^ -(b & 1)
                pos += 2
            else:
                size, pos = dv(buf, pos)
            if size >= 0:
                value: bytes | None = buf[pos:pos + size]
                pos += size
            else:
                value = None
            if buf[pos] == 0:
                headers: Any = _NO_HEADERS
                pos += 1
            else:
                n, pos = dv(buf, pos)
                if n < 0:
                    raise CorruptRecordError(f"invalid number of record headers {n}")
                headers = []
                for _ in range(n):
                    size, pos = dv(buf, pos)
                    if size < 0:
                        raise CorruptRecordError(f"invalid negative header key size {size}")
                    h_key = buf[pos:pos + size].decode("utf-8")
                    pos += size
                    size, pos = dv(buf, pos)
                    if size >= 0:
                        h_value: bytes | None = buf[pos:pos + size]
                        pos += size
                    else:
                        h_value = None
                    headers.append((h_key, h_value))
            if pos != end or pos > len(buf):
                raise CorruptRecordError(f"invalid record size: expected {length} bytes "
                                         f"in record payload, read {length + pos - end}")
            append((base_offset + offset_delta,
                    first_ts + ts_delta if log_append_ts is None else log_append_ts,
                    key, value, headers))
    except (IndexError, ValueError) as exc:
        raise CorruptRecordError(f"invalid record structure: {exc!r}") from exc
    return pos


class FastPartitionRecords(_BASE):  # type: ignore[misc,valid-type]
    """kafka-python's unpacking of one fetched partition, giving :data:`Raw` tuples.

    kafka-python's own class pulls records one at a time through a generator; here the
    generator gives each batch's records as one list and :meth:`take` slices them.
    """

    _chunk: list[Raw] | None = None
    _at = 0

    def _maybe_skip_record(self, chunk: list[Raw]) -> bool:
        return False  # records before the fetch offset are dropped as batches are read

    def take(self, n: int | None = None) -> list[Raw]:
        """Up to ``n`` records (all, without ``n``), moving ``next_fetch_offset`` past them."""
        self._maybe_raise_next_inline_exception()
        limit = sys.maxsize if n is None else n
        out: list[Raw] = []
        try:
            while len(out) < limit:
                chunk = self._chunk
                if chunk is None or self._at >= len(chunk):
                    iterator = self.record_iterator
                    chunk = self._chunk = None if iterator is None else next(iterator, None)
                    self._at = 0
                    if chunk is None:
                        break
                part = chunk[self._at:self._at + limit - len(out)]
                self._at += len(part)
                out.extend(part)
                self.next_fetch_offset = part[-1][0] + 1
        except Exception as exc:
            if not out:
                raise
            self._next_inline_exception = exc  # raised by the next take, as kafka-python does
        return out

    def _unpack_records(self, tp: Any, records: Any, key_deserializer: Any,
                        value_deserializer: Any) -> Iterator[list[Raw]]:
        # The batch-level steps are kafka-python's (fetcher.py, PartitionRecords), in order.
        batch = records.next_batch()
        last_batch = None
        while batch is not None:
            last_batch = batch
            if self.check_crcs and not batch.validate_crc():
                raise CorruptRecordError(f"Record batch for partition {tp} at offset "
                                         f"{batch.base_offset} failed crc check")
            if batch.magic != 2:  # pre-0.11 message sets: brokers of Kafka 4 write none
                raise CorruptRecordError(f"unsupported record batch magic {batch.magic}")
            self.leader_epoch = batch.leader_epoch
            if (self.isolation_level == _READ_COMMITTED
                    and batch.has_producer_id()):
                self._consume_aborted_transactions_up_to(batch.last_offset)
                if self._contains_abort_marker(batch):
                    self.aborted_producer_ids.discard(batch.producer_id)
                elif self._is_batch_aborted(batch):
                    self.next_fetch_offset = batch.next_offset
                    batch = records.next_batch()
                    continue
            if batch.is_control_batch:
                self.next_fetch_offset = batch.next_offset
                batch = records.next_batch()
                continue
            batch._maybe_uncompress()
            body = bytes(batch._buffer)
            out: list[Raw] = []
            end = unpack_batch(
                body, batch._pos, batch.records_count, batch.base_offset,
                batch.first_timestamp,
                batch.max_timestamp if batch.timestamp_type == _LOG_APPEND_TIME else None,
                out)
            if end != len(body):
                raise CorruptRecordError(f"{len(body) - end} unconsumed bytes after all "
                                         f"records of the batch at offset {batch.base_offset}")
            self.records_read += len(out)
            self.bytes_read += batch.size_in_bytes
            if out and out[0][0] < self.fetch_offset:
                # A fetch from inside a batch gets the whole batch: skip to the offset.
                out = [r for r in out if r[0] >= self.fetch_offset]
            if out:
                yield out
            batch = records.next_batch()
        # v2 keeps a batch's last offset even when compaction removed its last record:
        # fetch on from the batch's end, not from the last record seen.
        if last_batch is not None:
            self.next_fetch_offset = last_batch.next_offset
        self.drain()


def install(consumer: KafkaConsumer) -> bool:
    """Make ``consumer.poll()`` return :data:`Raw` tuples; False (nothing changed) if
    this kafka-python's fetcher is not the shape this module was written against.

    The shape is checked for real, by :func:`self_test`: record batches built with
    kafka-python's own builder are unpacked by :class:`FastPartitionRecords` and by
    kafka-python's own class and the results compared. Any exception or difference, here
    or in the self-test, and the consumer keeps kafka-python's records (which
    :func:`as_raw` turns into the same tuples): a kafka-python whose internals moved makes
    the processor slower, never broken.
    """
    try:
        fetcher = getattr(consumer, "_fetcher", None)
        if (fetcher is None or _BASE is object
                or getattr(fetcher, "PartitionRecords", None) is not _BASE
                or not all(hasattr(_BASE, name) for name in _NEEDED) or not self_test()):
            return False
        fetcher.PartitionRecords = FastPartitionRecords
        return True
    except Exception:  # noqa: BLE001 - any failure: kafka-python's own records are used
        return False


def _batch(records: list[tuple[bytes | None, bytes | None, list[Any]]], base_offset: int, *,
           compression: int = 0, producer_id: int = -1, control: bool = False) -> bytes:
    """A v2 record batch built by kafka-python's own builder (for :func:`self_test`)."""
    from kafka.record.default_records import DefaultRecordBatchBuilder
    from kafka.record.util import calc_crc32c

    builder = DefaultRecordBatchBuilder(
        magic=2, compression_type=compression, is_transactional=int(producer_id >= 0),
        producer_id=producer_id, producer_epoch=0 if producer_id >= 0 else -1,
        base_sequence=0 if producer_id >= 0 else -1, batch_size=1 << 20)
    for i, (key, value, headers) in enumerate(records):
        builder.append(i, timestamp=1_764_444_182_000 + i, key=key, value=value, headers=headers)
    buf = builder.build()
    buf[0:8] = base_offset.to_bytes(8, "big", signed=True)
    if control:  # the builder writes no control batches: set the flag, then the CRC again
        buf[22] |= 0x20  # attributes (int16 at 21) bit 5: control batch
        buf[17:21] = calc_crc32c(memoryview(buf)[21:]).to_bytes(4, "big")
    return bytes(buf)


def self_test() -> bool:
    """Whether :class:`FastPartitionRecords` reads built batches exactly as kafka-python does.

    Plain and gzip batches (keys, values and headers null or not, long varints), a fetch
    from inside a batch, and under ``read_committed`` an aborted transaction with its abort
    marker followed by a committed one: every record, and the next fetch offset, must
    equal kafka-python's own ``PartitionRecords`` reading of the same bytes.
    """
    try:
        from kafka import TopicPartition
        from kafka.record.memory_records import MemoryRecords

        records = [(b"k", b'{"a":1}', []), (None, b"", [("eventId", b"e-1")]),
                   (b"key" * 50, None, [("traceparent", None), ("h", b"x" * 200)]),
                   (b"", b"v" * 300, [])]
        abort, commit = (b"\x00\x00\x00\x00", b"\x00\x00\x00\x01")  # version 0, type
        marker = b"\x00\x00\x00\x00\x00\x00"  # version 0, coordinator epoch 0
        plain = _batch(records, 5) + _batch(records, 9, compression=1)  # none, gzip
        transactions = (_batch(records[:2], 13, producer_id=7)  # aborted below
                        + _batch([(abort, marker, [])], 15, producer_id=7, control=True)
                        + _batch(records[2:], 16, producer_id=8)
                        + _batch([(commit, marker, [])], 18, producer_id=8, control=True))
        aborted = collections.namedtuple("Aborted", "producer_id first_offset")
        cases = [(plain, 6, {}),
                 (plain + transactions, 0, {"isolation_level": _READ_COMMITTED,
                                            "aborted_transactions": [aborted(7, 13)]})]
        tp = TopicPartition("self-test", 0)
        for buf, fetch_offset, options in cases:
            theirs = _BASE(fetch_offset, tp, MemoryRecords(buf), **options)
            ours = FastPartitionRecords(fetch_offset, tp, MemoryRecords(buf), **options)
            expected = [(r.offset, r.timestamp, r.key, r.value, list(r.headers))
                        for r in theirs.take()]
            got = [(o, t, k, v, list(h)) for o, t, k, v, h in ours.take()]
            if (not expected or got != expected
                    or ours.next_fetch_offset != theirs.next_fetch_offset):
                return False
        return True
    except Exception:  # noqa: BLE001 - any failure: kafka-python's own records are used
        return False


def as_raw(record: Any) -> Raw:
    """A :data:`Raw` tuple: unchanged if it is one, else from a kafka-python record."""
    if type(record) is tuple:
        return record
    return (record.offset, record.timestamp, record.key, record.value, record.headers)


def consumer_record(topic: str, partition: int, raw: Raw) -> ConsumerRecord:
    """The kafka-python record of a :data:`Raw` tuple (key decoded as UTF-8), for the
    rare paths that want one: dead letters, traces."""
    offset, timestamp, key, value, headers = raw
    if isinstance(key, bytes):
        key = key.decode("utf-8", errors="replace")
    return ConsumerRecord(topic, partition, -1, offset, timestamp, 0, key, value,
                          list(headers), None,
                          -1 if key is None else len(key), -1 if value is None else len(value),
                          -1)
