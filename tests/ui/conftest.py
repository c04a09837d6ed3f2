"""The console's tests: NiceGUI's simulated `user` against the real services in-process.

`pytest_plugins = ["nicegui.testing.user_plugin"]` cannot live here: pytest refuses
`pytest_plugins` outside the root conftest (collecting `tests/` fails as a whole), and
the plugin's `user` fixture wants a main file. So this conftest builds the same
simulation (nicegui.testing's own pieces) around our `register(target)`, aimed at a
real runtime hosting every service.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from nicegui import app, core, ui
from nicegui.functions.download import download
from nicegui.functions.navigate import Navigate
from nicegui.functions.notify import notify
from nicegui.storage import Storage
from nicegui.testing.general import nicegui_reset_globals, prepare_simulation
from nicegui.testing.user import User

from tests.services.conftest import (  # noqa: F401 - re-exported fixtures
    RunningStack,
    StackFactory,
    envoy_for,
    stack_factory,
)
from ui.app import register


@pytest.fixture(scope="session", autouse=True)
def _console_storage() -> Iterator[None]:
    """Browser sessions of the simulated users live in a throwaway folder."""
    path = Path(tempfile.mkdtemp(prefix="embrec-console-test-"))
    Storage.path = path
    app.storage = Storage()
    yield
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
async def stack(stack_factory: StackFactory) -> RunningStack:  # noqa: F811 - imported above
    """Every service in-process; usage flushed every 0.1 s so the back office's figures
    show calls made a moment earlier (the default lags by 10 s)."""
    return await stack_factory(usage_flush_seconds=0.1)


@pytest.fixture
async def console_user(
    stack: RunningStack,
    caplog: pytest.LogCaptureFixture,
) -> AsyncIterator[User]:
    """A simulated browser on the console, whose stubs reach `stack` over gRPC."""
    with nicegui_reset_globals():
        os.environ["NICEGUI_USER_SIMULATION"] = "true"
        try:
            prepare_simulation()
            register(stack.address)
            ui.run(storage_secret="console test secret")
            async with (
                core.app.router.lifespan_context(core.app),
                httpx.AsyncClient(
                    transport=httpx.ASGITransport(core.app), base_url="http://test"
                ) as client,
            ):
                yield User(client)
        finally:
            os.environ.pop("NICEGUI_USER_SIMULATION", None)
            ui.navigate = Navigate()
            ui.notify = notify
            ui.download = download
    errors = [r for r in caplog.get_records("call") if r.levelname == "ERROR"]
    if errors:
        pytest.fail(f"the console logged errors: {[r.getMessage() for r in errors]}")
