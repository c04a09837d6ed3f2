"""`embrec bench audit-export`: ExportAuditEvents over a large trail in bounded memory.

Loads ``rows`` audit events (bulk inserts, the per-tenant hash chain computed as the
audit store does) into SQLite or PostgreSQL, then streams the CSV export exactly as the
servicer does (services/audit/servicer.csv_chunks) and prints rows/s and memory: the
process's resident set before the export and its peak during it.
"""

from __future__ import annotations

import asyncio
import resource
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

__all__ = ["bench_audit_export"]

_BATCH = 10_000
_TENANTS = 10


def _rss_mib() -> float:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def _run(rows: int, database_url: str, data_dir: Path) -> None:
    from sqlalchemy import insert

    from services.audit.servicer import csv_chunks
    from services.audit.store import GENESIS_HASH, AuditFilter, AuditStore, entry_hash
    from services.config import load_settings
    from services.storage import migrate
    from services.storage.db import create_engine, session_factory
    from services.storage.models import AuditEvent, new_id

    url = database_url or load_settings(data_dir=data_dir).effective_database_url
    await migrate.upgrade(url)
    engine = create_engine(url)
    sessions = session_factory(engine)
    store = AuditStore(sessions)
    heads = {f"bench-{n}": GENESIS_HASH for n in range(_TENANTS)}
    start_time = datetime.now(UTC) - timedelta(days=30)
    started = time.perf_counter()
    try:
        for first in range(0, rows, _BATCH):
            batch: list[dict[str, Any]] = []
            for n in range(first, min(rows, first + _BATCH)):
                tenant = f"bench-{n % _TENANTS}"
                row = SimpleNamespace(
                    id=new_id(),
                    tenant_id=tenant,
                    actor=f"user:{n % 97}",
                    impersonator=None,
                    action="apikey.create" if n % 3 else "tenant.update",
                    target=f"tenants/{tenant}/things/{n}",
                    request_id=None,
                    source_ip="10.0.0.1",
                    outcome="success",
                    details={"metadata": {"n": str(n)}, "user_agent": "", "status_code": ""},
                    time=start_time + timedelta(milliseconds=n),
                    prev_hash=heads[tenant],
                )
                row.hash = entry_hash(row.prev_hash, row)  # type: ignore[arg-type]
                heads[tenant] = row.hash
                batch.append(vars(row))
            # Core, not ORM: executemany on the table is several times faster.
            async with engine.begin() as connection:
                await connection.execute(insert(AuditEvent), batch)
        loaded = time.perf_counter() - started
        print(f"loaded {rows:,} audit events in {loaded:.1f} s ({rows / loaded:,.0f} rows/s)")

        rss_before = _rss_mib()
        peak_before = _peak_rss_mib()
        exported = 0
        size = 0
        peak_during = rss_before
        started = time.perf_counter()
        async for chunk in csv_chunks(store, AuditFilter()):
            exported += chunk.count(b"\n")
            size += len(chunk)
            peak_during = max(peak_during, _rss_mib())
        elapsed = time.perf_counter() - started
        exported -= 1  # the header line
        print(
            f"exported {exported:,} rows ({size / 2**20:,.0f} MiB of CSV) in {elapsed:.1f} s "
            f"({exported / elapsed:,.0f} rows/s)"
        )
        print(
            f"resident memory: {rss_before:,.0f} MiB before the export, peak "
            f"{peak_during:,.0f} MiB during it (+{peak_during - rss_before:,.0f} MiB); "
            f"process peak before the export {peak_before:,.0f} MiB"
        )
        report = await store.verify()
        print(f"VerifyChain over the trail: valid={report.valid}, {report.checked:,} events")
    finally:
        await engine.dispose()


def bench_audit_export(rows: int, database_url: str = "") -> None:
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(_run(rows, database_url, Path(tmp)))
