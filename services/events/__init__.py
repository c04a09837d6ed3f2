"""The event bus: transactional outbox, relay, and two interchangeable backends.

See :mod:`services.events.bus` for the contract and delivery guarantees,
:mod:`services.events.outbox` for writing events with state changes,
:mod:`services.events.kafka` and :mod:`services.events.sqllog` for the backends, and
:mod:`services.events.idempotency` for consumers that apply each event once.

The Kafka backend is imported lazily (``from services.events.kafka import ...``) so the
embedded mode never loads librdkafka.
"""

from services.events.bus import (
    Backoff,
    BusUnavailable,
    Consumer,
    EventBusError,
    EventRecord,
    Handler,
    OutboxRecord,
    Publisher,
)
from services.events.idempotency import claim_event, idempotent_handler
from services.events.outbox import OutboxRelay, add_event
from services.events.retention import purge_published, truncate_event_log
from services.events.sqllog import SqlLogConsumer, SqlLogPublisher

__all__ = [
    "Backoff",
    "BusUnavailable",
    "Consumer",
    "EventBusError",
    "EventRecord",
    "Handler",
    "OutboxRecord",
    "OutboxRelay",
    "Publisher",
    "SqlLogConsumer",
    "SqlLogPublisher",
    "add_event",
    "claim_event",
    "idempotent_handler",
    "purge_published",
    "truncate_event_log",
]
