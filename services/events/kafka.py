"""Kafka backend of the event bus (confluent-kafka / librdkafka).

Why it is built this way:

* librdkafka is a blocking C library with its own threads. Every call that can wait —
  ``flush``, ``poll``, ``commit``, ``close``, admin futures — runs in a worker thread, so
  the event loop keeps serving gRPC while the broker is slow or gone.
* The producer is idempotent with ``acks=all``: broker-side retries cannot duplicate or
  reorder a partition, and a record counts as published only when every in-sync replica
  has it. ``message.timeout.ms`` (``delivery_timeout``) bounds how long a batch waits
  for a broker that is down; then :meth:`KafkaPublisher.publish` raises
  :class:`~services.events.bus.BusUnavailable` and the outbox relay backs off and
  retries. The records stay in the outbox meanwhile — nothing is buffered only in memory.
* The message key is the outbox key (the partition, hence per-key order), and headers
  carry ``event_id`` and ``event_type`` so consumers can deduplicate and route without
  parsing the payload.
* After a fatal producer error (librdkafka may raise one for an idempotent producer
  whose state the broker lost, e.g. across a broker restart) the producer is discarded
  and a new one is created for the next batch; the unconfirmed records are still in the
  outbox.
* The consumer disables auto-commit and commits each message's offset synchronously after
  the handler returned: at-least-once. A failing handler is retried on the same message
  with backoff; nothing behind it in the partition is processed first.
* ``auto_offset_reset="latest"`` means the end of the log as of :meth:`KafkaConsumer.run`,
  as for the SQL log, not as of the partition assignment: a group joins seconds after
  ``run`` starts, and librdkafka's own "latest" would skip what was published meanwhile
  (a retriever replica serves, and so reads the current state, from its start). Partitions
  without a committed offset are positioned by timestamp (``offsets_for_times``) and
  records older than the start are skipped, which also covers brokers whose timestamp
  lookup is coarse (Tansu answers with offset 0 or a batch's first offset).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from functools import partial
from typing import Any

from confluent_kafka import (
    OFFSET_BEGINNING,
    TIMESTAMP_NOT_AVAILABLE,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)
from confluent_kafka import Consumer as _RdConsumer
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from services.events.bus import (
    EVENT_ID_HEADER,
    EVENT_TYPE_HEADER,
    Backoff,
    BusUnavailable,
    EventBusError,
    EventRecord,
    Handler,
    OutboxRecord,
    wait_or_stop,
)

__all__ = ["KafkaConsumer", "KafkaPublisher", "ensure_topics"]

logger = logging.getLogger(__name__)


class _LibrdkafkaLog:
    """Routes librdkafka's log lines to ``services.events.kafka.librdkafka``.

    librdkafka reports every failed reconnect as an error ("FAIL ... Connection refused").
    During an outage that is one line per client per retry, while the relay and consumer
    already report the outage themselves; connection failures are logged at INFO.
    """

    def __init__(self) -> None:
        self._logger = logging.getLogger(__name__ + ".librdkafka")

    def log(self, level: int, message: str, *args: object) -> None:
        if args:
            message = message % args
        if message.startswith("FAIL ") and level > logging.INFO:
            level = logging.INFO
        self._logger.log(level, "%s", message)


_librdkafka_logger = _LibrdkafkaLog()

_RESERVED_HEADERS = frozenset({EVENT_ID_HEADER, EVENT_TYPE_HEADER})


class KafkaPublisher:
    """Publishes outbox records to Kafka; see the module docstring for the guarantees.

    ``config`` adds or overrides librdkafka producer settings.
    """

    def __init__(
        self,
        bootstrap: str,
        *,
        delivery_timeout: float = 10.0,
        client_id: str = "embrec-outbox",
        config: Mapping[str, Any] | None = None,
    ) -> None:
        self._delivery_timeout = delivery_timeout
        self._config: dict[str, Any] = {
            "bootstrap.servers": bootstrap,
            "client.id": client_id,
            "enable.idempotence": True,
            "acks": "all",
            "message.timeout.ms": int(delivery_timeout * 1000),
            "linger.ms": 5,
            "reconnect.backoff.max.ms": 2000,
            "error_cb": self._on_error,
            "logger": _librdkafka_logger,
            **(config or {}),
        }
        self._producer: Producer | None = None
        self._fatal = threading.Event()
        self._lock = asyncio.Lock()

    def _on_error(self, error: KafkaError) -> None:
        if error.fatal() or error.code() == KafkaError._FATAL:
            self._fatal.set()
            logger.error("kafka producer fatal error: %s", error)
        else:
            logger.debug("kafka producer error: %s", error)

    async def publish(self, records: Sequence[OutboxRecord]) -> None:
        if not records:
            return
        async with self._lock:  # one batch at a time: simple accounting, order kept
            if self._producer is None:
                self._fatal.clear()
                self._producer = Producer(self._config)
            producer = self._producer
            try:
                delivered, error = await asyncio.to_thread(self._publish_sync, producer, records)
            finally:
                if self._fatal.is_set():
                    self._producer = None
                    await asyncio.to_thread(_discard, producer)
        missing = len(records) - len(delivered)
        if missing:
            raise BusUnavailable(
                f"{missing} of {len(records)} records not confirmed by Kafka: {error}",
                delivered=delivered,
            )

    def _publish_sync(
        self, producer: Producer, records: Sequence[OutboxRecord]
    ) -> tuple[set[str], str]:
        delivered: set[str] = set()
        errors: list[str] = []

        def on_delivery(event_id: str, error: KafkaError | None, _message: Message) -> None:
            if error is None:
                delivered.add(event_id)
                return
            # Any failed delivery retires this producer, not only fatal errors: after a
            # broker restart an idempotent producer whose messages timed out can keep
            # timing out (its producer id/epoch is gone on the broker). A new producer
            # costs one connection; the outbox re-sends what was not confirmed.
            self._fatal.set()
            errors.append(str(error))

        try:
            for record in records:
                self._produce(producer, record, partial(on_delivery, record.id))
            remaining = producer.flush(self._delivery_timeout + 5.0)
        except Exception as exc:
            # confluent-kafka raises fatal errors (e.g. UNKNOWN_PRODUCER_ID after the broker
            # lost the idempotent producer's state) out of produce() or flush(); a producer
            # in that state never recovers, so the next batch gets a new one.
            errors.append(f"{type(exc).__name__}: {exc}")
            self._fatal.set()
            return delivered, "; ".join(dict.fromkeys(errors))
        if remaining:
            errors.append(f"{remaining} messages still queued after flush")
            self._fatal.set()  # start over with a fresh producer; the outbox still has them
        return delivered, "; ".join(dict.fromkeys(errors)) or "no error reported"

    @staticmethod
    def _produce(producer: Producer, record: OutboxRecord, on_delivery: Any) -> None:
        headers: list[tuple[str, str | bytes | None]] = [
            (k, v.encode()) for k, v in record.headers.items() if k not in _RESERVED_HEADERS
        ]
        headers += [
            (EVENT_ID_HEADER, record.id.encode()),
            (EVENT_TYPE_HEADER, record.event_type.encode()),
        ]
        while True:
            try:
                producer.produce(
                    record.topic,
                    value=record.payload,
                    key=record.key.encode(),
                    headers=headers,
                    on_delivery=on_delivery,
                )
                return
            except BufferError:  # local queue full: serve delivery callbacks, then retry
                producer.poll(0.1)

    async def close(self) -> None:
        """Deliver what is in flight (bounded by the delivery timeout) and drop the producer."""
        async with self._lock:
            producer, self._producer = self._producer, None
        if producer is not None:
            await asyncio.to_thread(producer.flush, self._delivery_timeout)


def _discard(producer: Producer) -> None:
    producer.purge()
    producer.flush(0)


class KafkaConsumer:
    """Consumes ``topics`` as group ``group_id``; see the module docstring.

    ``session_timeout_ms``/``heartbeat_interval_ms`` default to production-ish values;
    tests pass 2000/500 so a group joins in about a second. ``config`` adds or overrides
    librdkafka consumer settings. With ``auto_offset_reset="latest"`` a new group starts
    at the end of the log as of ``run()`` (module docstring), less ``start_skew`` seconds
    for producers whose clocks lag this host's.
    """

    def __init__(
        self,
        bootstrap: str,
        group_id: str,
        topics: Sequence[str],
        *,
        session_timeout_ms: int = 10_000,
        heartbeat_interval_ms: int = 3_000,
        auto_offset_reset: str = "earliest",
        poll_timeout: float = 0.5,
        backoff_initial: float = 0.2,
        backoff_max: float = 5.0,
        client_id: str | None = None,
        start_skew: float = 2.0,
        config: Mapping[str, Any] | None = None,
    ) -> None:
        if not topics:
            raise ValueError("topics must not be empty")
        self._group_id = group_id
        self._start_skew_ms = int(start_skew * 1000)
        #: Epoch ms a "latest" group starts from, fixed when run() begins.
        self._start_ms: int | None = None
        #: Partitions this group had never committed when assigned: only their records
        #: older than the start are skipped (a committed partition resumes its backlog).
        self._fresh: set[tuple[str, int]] = set()
        self._topics = list(topics)
        self._poll_timeout = poll_timeout
        self._backoff_initial = backoff_initial
        self._backoff_max = backoff_max
        self._config: dict[str, Any] = {
            "bootstrap.servers": bootstrap,
            "group.id": group_id,
            "client.id": client_id or f"embrec-{group_id}",
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": auto_offset_reset,
            "session.timeout.ms": session_timeout_ms,
            "heartbeat.interval.ms": heartbeat_interval_ms,
            "reconnect.backoff.max.ms": 2000,
            "error_cb": self._on_error,
            "logger": _librdkafka_logger,
            **(config or {}),
        }

    def _on_error(self, error: KafkaError) -> None:
        log = logger.error if error.fatal() else logger.debug
        log("kafka consumer %s error: %s", self._group_id, error)

    async def run(self, handler: Handler, stop_event: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        if self._config.get("auto.offset.reset") == "latest":
            self._start_ms = int(time.time() * 1000) - self._start_skew_ms
        executor = ThreadPoolExecutor(1, thread_name_prefix=f"kafka-{self._group_id}")
        try:
            consumer: _RdConsumer = await loop.run_in_executor(executor, self._create)
            try:
                await self._loop(consumer, executor, handler, stop_event)
            finally:
                await loop.run_in_executor(executor, consumer.close)
        finally:
            executor.shutdown(wait=False)

    def _create(self) -> _RdConsumer:
        consumer = _RdConsumer(self._config)
        if self._start_ms is None:
            consumer.subscribe(self._topics)
        else:
            consumer.subscribe(self._topics, on_assign=self._position_at_start)
        return consumer

    def _position_at_start(self, consumer: _RdConsumer, partitions: list[TopicPartition]) -> None:
        """Rebalance callback (in the poll thread): partitions this group never committed
        start at the first record since ``run()``; the others at their committed offset.

        Returning without ``assign()`` leaves them to ``auto.offset.reset``: only when the
        broker cannot answer, and then it is said in the log.
        """
        start = self._start_ms
        if start is None or not partitions:
            return
        try:
            committed = consumer.committed(partitions, timeout=10)
            fresh = [p for p in committed if p.offset < 0]
            self._fresh.update((p.topic, p.partition) for p in fresh)
            # High watermarks before the lookup: when it finds no record since the start,
            # everything below them is older (librdkafka's OFFSET_END would be read later,
            # after records that may be new).
            ends = {
                (p.topic, p.partition): consumer.get_watermark_offsets(p, timeout=10, cached=False)
                for p in fresh
            }
            lookup = [TopicPartition(p.topic, p.partition, start) for p in fresh]
            found = consumer.offsets_for_times(lookup, timeout=10) if lookup else []
        except KafkaException as exc:
            logger.warning(
                "kafka consumer %s: cannot position %d partition(s) at the start time (%s); "
                "events published since the start may be skipped",
                self._group_id,
                len(partitions),
                exc,
            )
            return
        by_partition = {(f.topic, f.partition): f for f in found}
        positions = []
        for p in committed:
            key = (p.topic, p.partition)
            offset = p.offset
            if offset < 0:
                hit, marks = by_partition.get(key), ends.get(key)
                if hit is not None and hit.error is None and hit.offset >= 0:
                    offset = hit.offset
                elif hit is not None and hit.error is None and marks is not None:
                    offset = marks[1]  # no record since the start
                else:
                    # Unknown: from the beginning; _before_start skips the old records.
                    offset = OFFSET_BEGINNING
            positions.append(TopicPartition(p.topic, p.partition, offset))
        consumer.assign(positions)

    def _before_start(self, message: Message) -> bool:
        if self._start_ms is None or (message.topic(), message.partition()) not in self._fresh:
            return False
        kind, timestamp_ms = message.timestamp()
        return kind != TIMESTAMP_NOT_AVAILABLE and 0 <= timestamp_ms < self._start_ms

    async def _loop(
        self,
        consumer: _RdConsumer,
        executor: ThreadPoolExecutor,
        handler: Handler,
        stop_event: asyncio.Event,
    ) -> None:
        loop = asyncio.get_running_loop()
        while not stop_event.is_set():
            message: Message | None = await loop.run_in_executor(
                executor, consumer.poll, self._poll_timeout
            )
            if message is None:
                continue
            error = message.error()
            if error is not None:
                if error.fatal():
                    raise EventBusError(f"kafka consumer {self._group_id}: {error}")
                if error.code() != KafkaError._PARTITION_EOF:
                    logger.debug("kafka consumer %s: %s", self._group_id, error)
                continue
            if self._before_start(message):
                # Not committed: a later commit covers it, and a replay skips it again.
                continue
            record = _to_record(message)
            if not await self._handle(handler, record, stop_event):
                return  # stopped before the handler succeeded: not committed, redelivered
            try:
                await loop.run_in_executor(
                    executor, partial(consumer.commit, message=message, asynchronous=False)
                )
            except KafkaException as exc:
                # E.g. a rebalance took the partition away: the event will be redelivered
                # to its new owner, which deduplicates. Not a reason to stop.
                logger.warning(
                    "kafka consumer %s: commit of %s[%d]@%d failed: %s",
                    self._group_id,
                    record.topic,
                    record.partition,
                    record.offset,
                    exc,
                )

    async def _handle(
        self, handler: Handler, record: EventRecord, stop_event: asyncio.Event
    ) -> bool:
        backoff = Backoff(self._backoff_initial, self._backoff_max)
        while True:
            try:
                await handler(record)
                return True
            except Exception:
                delay = backoff.next_delay()
                logger.exception(
                    "kafka consumer %s: handler failed on event %s (%s[%d]@%d); retry in %.1f s",
                    self._group_id,
                    record.event_id,
                    record.topic,
                    record.partition,
                    record.offset,
                    delay,
                )
            await wait_or_stop(stop_event, delay)
            if stop_event.is_set():
                return False


def _to_record(message: Message) -> EventRecord:
    headers: dict[str, str] = {}
    raw_headers = message.headers() or []
    pairs = list(raw_headers.items()) if isinstance(raw_headers, dict) else list(raw_headers)
    for name, value in pairs:
        if value is None:
            continue
        raw = value if isinstance(value, bytes) else str(value).encode()
        headers[name] = raw.decode("utf-8", errors="replace")
    topic = message.topic() or ""
    partition = message.partition() or 0
    offset = message.offset() or 0
    event_id = headers.pop(EVENT_ID_HEADER, None) or f"{topic}:{partition}:{offset}"
    event_type = headers.pop(EVENT_TYPE_HEADER, "")
    key = message.key()
    timestamp_type, timestamp_ms = message.timestamp()
    timestamp = (
        datetime.fromtimestamp(timestamp_ms / 1000, UTC)
        if timestamp_type and timestamp_ms > 0
        else None
    )
    value = message.value()
    return EventRecord(
        topic=topic,
        key=key.decode("utf-8", errors="replace") if isinstance(key, bytes) else str(key or ""),
        event_id=event_id,
        event_type=event_type,
        payload=value if isinstance(value, bytes) else bytes(value or b""),
        headers=headers,
        partition=partition,
        offset=offset,
        timestamp=timestamp,
    )


async def ensure_topics(
    bootstrap: str,
    topics: Sequence[str],
    *,
    num_partitions: int = 3,
    replication_factor: int = 1,
    request_timeout: float = 10.0,
) -> None:
    """Create ``topics`` unless they exist (idempotent). Raises BusUnavailable on failure."""
    await asyncio.to_thread(
        _ensure_topics_sync,
        bootstrap,
        list(topics),
        num_partitions,
        replication_factor,
        request_timeout,
    )


def _ensure_topics_sync(
    bootstrap: str,
    topics: list[str],
    num_partitions: int,
    replication_factor: int,
    timeout: float,
) -> None:
    config: dict[str, Any] = {"bootstrap.servers": bootstrap, "logger": _librdkafka_logger}
    admin = AdminClient(config)
    try:
        existing = set(admin.list_topics(timeout=timeout).topics)
    except KafkaException as exc:
        raise BusUnavailable(f"cannot list topics: {exc}") from exc
    wanted = [t for t in dict.fromkeys(topics) if t not in existing]
    if not wanted:
        return
    futures = admin.create_topics(
        [
            NewTopic(t, num_partitions=num_partitions, replication_factor=replication_factor)
            for t in wanted
        ],
        operation_timeout=timeout,
        request_timeout=timeout,
    )
    for topic, future in futures.items():
        try:
            future.result(timeout=timeout)
            logger.info("created topic %s (%d partitions)", topic, num_partitions)
        except KafkaException as exc:
            error = exc.args[0] if exc.args else None
            if isinstance(error, KafkaError) and error.code() == KafkaError.TOPIC_ALREADY_EXISTS:
                continue
            raise BusUnavailable(f"cannot create topic {topic}: {exc}") from exc
        except TimeoutError as exc:
            raise BusUnavailable(f"timed out creating topic {topic}") from exc
