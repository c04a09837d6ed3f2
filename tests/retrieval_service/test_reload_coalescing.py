"""Reloads of one tenant coalesce, but never swallow a deployment made during a pass."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, cast

from services.retrieval.domain import Route, ServingState


class _ScriptedState(ServingState):
    """A ServingState whose reload pass reads `deployed` and then waits for `gate`."""

    def __init__(self) -> None:
        super().__init__(cast(Any, None), Path("."))
        self.deployed = "deployment-1"
        self.passes = 0
        self.gate = asyncio.Event()
        self.has_read = asyncio.Event()

    async def _reload(self, tenant_id: str) -> Route:
        read = self.deployed
        self.passes += 1
        self.has_read.set()
        await self.gate.wait()
        route = Route(deployment_id=read, split=())
        self._tenant(tenant_id).route = route
        return route


async def test_a_deploy_during_a_reload_pass_is_picked_up() -> None:
    state = _ScriptedState()
    first = asyncio.create_task(state.reload("t"))
    await state.has_read.wait()  # the pass read deployment-1 and is loading indexes
    state.deployed = "deployment-2"  # ModelDeployed arrives mid-pass
    await state.reload("t", wait=False)
    state.gate.set()
    route = await first
    assert route.deployment_id == "deployment-2"
    assert state.route("t").deployment_id == "deployment-2"
    assert state.passes == 2


async def test_concurrent_requests_before_a_pass_starts_share_it() -> None:
    state = _ScriptedState()
    state.gate.set()
    routes = await asyncio.gather(*(state.reload("t") for _ in range(5)))
    assert {r.deployment_id for r in routes} == {"deployment-1"}
    assert state.passes == 1
