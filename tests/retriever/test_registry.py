from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from retriever.engine import TenantModelIndex
from retriever.errors import ModelNotLoadedError
from retriever.filters import Catalog
from retriever.registry import IndexRegistry


def make(tenant: str, version: str, n: int = 200, d: int = 8, seed: int = 0) -> TenantModelIndex:
    rng = np.random.default_rng(seed)
    cat = Catalog.from_columns([f"{version}-{i}" for i in range(n)], ["c"] * n, [1.0] * n)
    return TenantModelIndex.build(
        tenant,
        version,
        cat,
        rng.standard_normal((n, d)).astype(np.float32),
        user_embeddings=rng.standard_normal((1, d)).astype(np.float32),
        user_ids=["u"],
    )


def test_get_put_unload_retain() -> None:
    reg = IndexRegistry()
    with pytest.raises(ModelNotLoadedError):
        reg.get("t", "v1")
    reg.put(make("t", "v1"))
    reg.put(make("t", "v2"))
    reg.put(make("other", "v1"))
    assert reg.versions("t") == ["v1", "v2"]
    assert reg.retain("t", {"v2"}) == ["v1"]
    assert reg.loaded() == [("other", "v1"), ("t", "v2")]
    assert reg.unload("other", "v1") and not reg.unload("other", "v1")
    assert set(reg.memory_by_tenant()) == {"t"}
    reg.close()


def test_concurrent_readers_during_swaps_never_fail() -> None:
    reg = IndexRegistry()
    versions = [make("t", "live", seed=s) for s in range(4)]
    reg.put(versions[0])
    stop = threading.Event()
    errors: list[BaseException] = []
    served = [0]

    def reader() -> None:
        while not stop.is_set():
            try:
                m = reg.get("t", "live")
                res = m.recommend("u", 10)
                assert len(res.items) == 10 and not res.fallback
                # Every id comes from the one object the reader got: never a mix.
                assert all(i in m.catalog.positions for i, _ in res.items)
                served[0] += 1
            except BaseException as exc:  # collect anything, assert after
                errors.append(exc)

    threads = [threading.Thread(target=reader) for _ in range(4)]
    for t in threads:
        t.start()
    futures = []
    for i in range(12):
        futures.append(reg.load_in_background("t", "live", lambda i=i: versions[i % 4]))
        time.sleep(0.01)
    for f in futures:
        f.result(timeout=30)
    time.sleep(0.05)
    stop.set()
    for t in threads:
        t.join(timeout=30)
    assert not errors, errors[:3]
    assert served[0] > 0
    reg.close()


def test_background_load_is_shared_and_swaps_when_built() -> None:
    reg = IndexRegistry()
    gate = threading.Event()
    calls = []

    def slow() -> TenantModelIndex:
        calls.append(1)
        gate.wait(10)
        return make("t", "v")

    f1 = reg.load_in_background("t", "v", slow)
    f2 = reg.load_in_background("t", "v", slow)
    assert f1 is f2
    assert reg.peek("t", "v") is None  # nothing half-built visible
    gate.set()
    assert f1.result(10) is reg.get("t", "v")
    assert len(calls) == 1
    reg.close()


def test_eviction_under_memory_cap_is_lru_by_tenant() -> None:
    one = make("a", "v1").nbytes
    reg = IndexRegistry(memory_cap_bytes=int(2.5 * one))
    reg.put(make("a", "v1"))
    reg.put(make("b", "v1"))
    reg.get("a", "v1")  # a is now more recent than b
    evicted = reg.put(make("c", "v1"))
    assert evicted == ["b"]
    assert reg.loaded() == [("a", "v1"), ("c", "v1")]
    assert reg.total_bytes <= int(2.5 * one)
    # A tenant larger than the cap alone stays (the others go).
    big = make("d", "v1", n=2000)
    assert reg.put(big) == ["a", "c"]
    assert reg.loaded() == [("d", "v1")]
    reg.close()


async def test_asyncio_readers_during_swap() -> None:
    import asyncio

    reg = IndexRegistry()
    reg.put(make("t", "v", seed=1))

    async def reader() -> int:
        ok = 0
        for _ in range(50):
            assert len(reg.get("t", "v").recommend("u", 5).items) == 5
            ok += 1
            await asyncio.sleep(0)
        return ok

    fut = asyncio.wrap_future(reg.load_in_background("t", "v", lambda: make("t", "v", seed=2)))
    counts = await asyncio.gather(*(reader() for _ in range(5)), fut)
    assert sum(counts[:5]) == 250
    reg.close()


def test_best_available_falls_back_to_another_version() -> None:
    reg = IndexRegistry()
    with pytest.raises(ModelNotLoadedError):
        reg.best_available("t", "v2")
    reg.put(make("t", "v1"))
    reg.put(make("t", "v0"))
    m, exact = reg.best_available("t", "v2")
    assert not exact and m.model_version == "v0"  # most recently installed
    reg.put(make("t", "v2"))
    m, exact = reg.best_available("t", "v2")
    assert exact and m.model_version == "v2"
    reg.close()
