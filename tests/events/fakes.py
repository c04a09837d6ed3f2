"""An in-memory publisher whose outages the test controls."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from services.events.bus import BusUnavailable, OutboxRecord


class FakePublisher:
    """Records what it publishes. While `down`, it raises BusUnavailable after confirming
    the first `partial` records of the batch (a broker that failed mid-batch)."""

    def __init__(self) -> None:
        self.published: list[OutboxRecord] = []
        self.down = False
        self.partial = 0
        self.failures = 0
        self.delay = 0.0

    async def publish(self, records: Sequence[OutboxRecord]) -> None:
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.down:
            self.failures += 1
            confirmed = list(records[: self.partial])
            self.published.extend(confirmed)
            raise BusUnavailable("broker down", delivered=[r.id for r in confirmed])
        self.published.extend(records)

    async def close(self) -> None:
        pass

    @property
    def ids(self) -> list[str]:
        return [r.id for r in self.published]
