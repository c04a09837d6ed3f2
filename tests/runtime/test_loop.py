"""services/runtime/loop.py: which event loop a service process runs on."""

from __future__ import annotations

import asyncio
import sys

import pytest

from services.runtime import loop


async def _loop_kind() -> str:
    return type(asyncio.get_running_loop()).__module__.split(".")[0]


def test_auto_runs_on_uvloop_where_installed_and_asyncio_on_request() -> None:
    assert loop.run(_loop_kind()) == "uvloop"
    assert loop.run(_loop_kind(), "uvloop") == "uvloop"
    assert loop.run(_loop_kind(), "asyncio") == "asyncio"


def test_without_uvloop_auto_falls_back_and_uvloop_says_why(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "uvloop", None)  # import uvloop raises ImportError
    assert loop.run(_loop_kind()) == "asyncio"
    with pytest.raises(RuntimeError, match="EMBREC_EVENT_LOOP=uvloop but uvloop is not installed"):
        loop.run(_loop_kind(), "uvloop")
