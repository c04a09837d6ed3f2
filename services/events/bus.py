"""The event bus interface: what a publisher and a consumer promise, whatever the backend.

embrec moves asynchronous facts (interactions, catalog changes, audit events, model
deployments) as ``embrec.events.v1`` protobuf messages. At this layer a payload is opaque
``bytes``; the services serialize and parse it. Two backends implement the interface:

* :mod:`services.events.kafka` — Kafka (Apache Kafka in production, Tansu in tests);
* :mod:`services.events.sqllog` — an append-only log in SQL for the embedded mode.

Delivery is at-least-once end to end:

* services never publish directly: they write an outbox row in the transaction that
  changes their state (:func:`services.events.outbox.add_event`), and the
  :class:`~services.events.outbox.OutboxRelay` publishes it later, retrying while the bus
  is down, so an outage delays events but loses none;
* a consumer commits its position only after the handler returned, so a crash replays
  rather than skips;
* the price is possible duplicates, which consumers absorb by event id
  (:mod:`services.events.idempotency`).

Errors::

    EventBusError
    └── BusUnavailable   the broker cannot be reached or did not confirm delivery; retry

Backoff between retries is bounded exponential (:class:`Backoff`), with jitter so that
many clients do not reconnect in lock-step after an outage.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

__all__ = [
    "EVENT_ID_HEADER",
    "EVENT_TYPE_HEADER",
    "Backoff",
    "BusUnavailable",
    "Consumer",
    "EventBusError",
    "EventRecord",
    "Handler",
    "OutboxRecord",
    "Publisher",
    "wait_or_stop",
]

#: Header names that carry the event id and type on the wire (Kafka headers).
EVENT_ID_HEADER = "event_id"
EVENT_TYPE_HEADER = "event_type"


@dataclass(frozen=True, slots=True)
class OutboxRecord:
    """An event to publish, as read from the outbox."""

    id: str
    topic: str
    key: str
    event_type: str
    payload: bytes
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class EventRecord:
    """An event as delivered to a consumer's handler.

    ``partition`` and ``offset`` locate it in its backend (the SQL log has one partition,
    0). ``headers`` holds the application headers (event id and type are fields).
    """

    topic: str
    key: str
    event_id: str
    event_type: str
    payload: bytes
    headers: Mapping[str, str]
    partition: int
    offset: int
    timestamp: datetime | None = None


#: A consumer's handler. Raising means "not processed": the event is retried.
Handler = Callable[[EventRecord], Awaitable[None]]


class EventBusError(Exception):
    """Base class of event bus errors."""


class BusUnavailable(EventBusError):
    """The bus could not be reached, or did not confirm delivery of every record.

    ``delivered`` holds the ids of the records that *were* confirmed, so the caller need not
    publish them again (it may; consumers deduplicate).
    """

    def __init__(self, message: str, *, delivered: Iterable[str] = ()) -> None:
        super().__init__(message)
        self.delivered: frozenset[str] = frozenset(delivered)


class Publisher(Protocol):
    """Publishes outbox records to the bus.

    ``publish`` returns only when every record is durably accepted by the bus, and raises
    :class:`BusUnavailable` otherwise. Records with the same key keep their order.
    """

    async def publish(self, records: Sequence[OutboxRecord]) -> None: ...

    async def close(self) -> None: ...


class Consumer(Protocol):
    """Delivers events of its topics to a handler, one at a time, at least once.

    ``run`` returns when ``stop_event`` is set (after the handler in progress returns). The
    position is committed only after the handler returned; a handler that raises is
    retried with backoff on the same event until it succeeds or the consumer stops.
    """

    async def run(self, handler: Handler, stop_event: asyncio.Event) -> None: ...


class Backoff:
    """Bounded exponential backoff with full jitter: ``uniform(d/2, d)``, ``d`` doubling up
    to ``maximum``. ``reset()`` after a success."""

    def __init__(self, initial: float = 0.2, maximum: float = 10.0, factor: float = 2.0) -> None:
        if initial <= 0 or maximum < initial or factor < 1:
            raise ValueError("need 0 < initial <= maximum and factor >= 1")
        self._initial = initial
        self._maximum = maximum
        self._factor = factor
        self._next = initial
        self.failures = 0

    def next_delay(self) -> float:
        delay = self._next
        self._next = min(self._next * self._factor, self._maximum)
        self.failures += 1
        return random.uniform(delay / 2, delay)  # noqa: S311 - jitter, not cryptography

    def reset(self) -> None:
        self._next = self._initial
        self.failures = 0


async def wait_or_stop(
    stop_event: asyncio.Event, seconds: float, wake: asyncio.Event | None = None
) -> None:
    """Sleep up to ``seconds``, returning early when ``stop_event`` (or ``wake``) is set.

    ``wake`` is cleared before returning, so one wake-up is consumed once.
    """
    waiters = [asyncio.ensure_future(stop_event.wait())]
    if wake is not None:
        waiters.append(asyncio.ensure_future(wake.wait()))
    try:
        await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
        await asyncio.gather(*waiters, return_exceptions=True)
        if wake is not None:
            wake.clear()
