"""The event loop a service process runs on.

uvloop (libuv) where it is installed, which it is wherever the console's uvicorn
brought it: in ``embrec bench serve`` it cut the CPU per request of every Python hop
(the authz gateway and the serving replica), closed loop 1,805/1,840 -> 2,130/1,928
req/s on two cores (docs/retrieval-service.md, session 6). grpc.aio runs on any
asyncio loop. The standard loop stays one setting away (``EMBREC_EVENT_LOOP=asyncio``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, Literal, TypeVar

__all__ = ["run"]

T = TypeVar("T")


def run(main: Coroutine[Any, Any, T], loop: Literal["auto", "uvloop", "asyncio"] = "auto") -> T:
    """Run ``main`` to completion on a new event loop of the chosen kind."""
    if loop != "asyncio":
        try:
            import uvloop
        except ImportError:
            if loop == "uvloop":
                main.close()
                raise RuntimeError(
                    "EMBREC_EVENT_LOOP=uvloop but uvloop is not installed (pip install uvloop)"
                ) from None
        else:
            return uvloop.run(main)
    return asyncio.run(main)
