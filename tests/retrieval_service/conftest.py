"""Helpers for retrieval service tests: tenants with catalogs, trained artifacts, deployments.

Artifacts are written with the trainer's own ``write_artifacts`` and rows are inserted
as the training service will write them (``models``, ``deployments`` with the split
format of docs/retrieval-service.md), so these tests need no trainer run.

The synthetic model is built so its answers are predictable: items of category ``c``
point along axis ``c``; user ``u<k>`` points along axis ``k % 4`` (likes category
``k % 4``); the items' scores fall with their index inside a category.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import numpy as np
from sqlalchemy import insert, update

from embrec.events.v1 import events_pb2
from embrec.retrieval.v1 import retrieval_service_pb2 as pb
from embrec.retrieval.v1 import retrieval_service_pb2_grpc as pb_grpc
from embrec.training.v1 import resources_pb2 as training_pb
from services.event_messages import emit
from services.identity.credentials import Principal
from services.storage.db import create_engine, session_factory
from services.storage.models import Deployment, Interaction, Item, ModelVersion, Tenant, utcnow
from tests.services.conftest import RunningStack, captured_logs, envoy_for, stack_factory
from trainer.artifacts import write_artifacts

__all__ = ["captured_logs", "envoy_for", "stack_factory"]  # fixtures shared with tests/services

CATEGORIES = ("smartphones", "laptops", "audio", "cameras")
DIM = 8


async def sql(stack: RunningStack, *statements: Any) -> None:
    engine = create_engine(stack.runtime.settings.effective_database_url)
    try:
        async with engine.begin() as connection:
            for statement in statements:
                await connection.execute(statement)
    finally:
        await engine.dispose()


async def query(stack: RunningStack, statement: Any) -> list[tuple[Any, ...]]:
    engine = create_engine(stack.runtime.settings.effective_database_url)
    try:
        async with engine.connect() as connection:
            return [tuple(r) for r in await connection.execute(statement)]
    finally:
        await engine.dispose()


def item_vectors(n_items: int, prefix: str) -> tuple[list[str], np.ndarray]:
    ids = [f"{prefix}{i}" for i in range(n_items)]
    vectors = np.zeros((n_items, DIM), dtype=np.float32)
    for i in range(n_items):
        c = i % len(CATEGORIES)
        vectors[i, c] = 1.0 - i / (4.0 * n_items)  # earlier items score higher
        vectors[i, 4 + c] = 0.1
    return ids, vectors


@dataclass
class Shop:
    """One tenant with a catalog, and helpers to train/deploy and call the service."""

    stack: RunningStack
    tenant_id: str
    slug: str
    item_ids: list[str]
    prefix: str

    @property
    def stub(self) -> pb_grpc.RetrievalServiceStub:
        return pb_grpc.RetrievalServiceStub(self.stack.channel)

    @property
    def internal(self) -> pb_grpc.RetrievalInternalServiceStub:
        return pb_grpc.RetrievalInternalServiceStub(self.stack.channel)

    def metadata(self, scopes: Iterable[str] = ("recommend:read", "analytics:read")) -> Any:
        principal = Principal(
            subject=f"apikey:{self.tenant_id[:8]}",
            tenant_id=self.tenant_id,
            role="api_key",
            scopes=frozenset(scopes),
        )
        return (("authorization", f"Bearer {self.stack.token_for(principal)}"),)

    def category_of(self, item_id: str) -> str:
        return CATEGORIES[int(item_id.removeprefix(self.prefix)) % len(CATEGORIES)]

    async def train(
        self,
        version: int,
        *,
        users: int = 40,
        flip: bool = False,
        scoring: dict[str, Any] | None = None,
    ) -> None:
        """Write artifacts for model ``version`` and its ``models`` row.

        ``flip`` makes user u<k> like category (k+1) % 4 instead: another version
        with visibly different answers. ``scoring``: the artifacts' scoring.json.
        """
        ids, vectors = item_vectors(len(self.item_ids), self.prefix)
        user_ids = [f"u{k}" for k in range(users)]
        user_vectors = np.zeros((users, DIM), dtype=np.float32)
        for k in range(users):
            user_vectors[k, (k + (1 if flip else 0)) % len(CATEGORIES)] = 1.0
        root = self.stack.runtime.settings.effective_artifact_dir / self.tenant_id
        path = await asyncio.to_thread(
            write_artifacts,
            root,
            f"v{version}",
            user_embeddings=user_vectors,
            item_embeddings=vectors,
            user_ids=user_ids,
            item_ids=ids,
            popularity=np.arange(len(ids), 0, -1, dtype=np.int64),
            metrics={"ndcg@10": 0.5},
            config={"dim": DIM},
            data_hash="0" * 64,
            scoring=scoring,
        )
        await sql(
            self.stack,
            insert(ModelVersion).values(
                id=str(uuid.uuid4()),
                tenant_id=self.tenant_id,
                version=version,
                artifact_uri=str(path),
                metrics={},
                config={},
                created_at=utcnow(),
            ),
        )

    async def deploy(self, split: Sequence[tuple[str, int]], *, announce: bool = True) -> str:
        """Activate a new deployment (as DeployModel will) and publish ModelDeployed."""
        deployment_id = str(uuid.uuid4())
        engine = create_engine(self.stack.runtime.settings.effective_database_url)
        try:
            sessions = session_factory(engine)
            async with sessions() as session, session.begin():
                await session.execute(
                    update(Deployment)
                    .where(Deployment.tenant_id == self.tenant_id)
                    .values(active=False)
                )
                await session.execute(
                    insert(Deployment).values(
                        id=deployment_id,
                        tenant_id=self.tenant_id,
                        split=[{"model_version": v, "percent": p} for v, p in split],
                        created_at=utcnow(),
                        active=True,
                    )
                )
                if announce:
                    emit(
                        session,
                        events_pb2.ModelDeployed(
                            deployment=training_pb.Deployment(
                                id=deployment_id,
                                tenant_id=self.tenant_id,
                                traffic_split=[
                                    training_pb.TrafficSplit(model_version=v, percent=p)
                                    for v, p in split
                                ],
                            )
                        ),
                        tenant_id=self.tenant_id,
                    )
        finally:
            await engine.dispose()
        return deployment_id

    async def interactions(
        self, user_id: str, item_ids: Sequence[str], *, kind: str = "view", age_days: float = 0
    ) -> None:
        now = datetime.now(UTC) - timedelta(days=age_days)
        rows = [
            {
                "tenant_id": self.tenant_id,
                "user_id": user_id,
                "item_id": item,
                "type": kind,
                "ts": now - timedelta(seconds=len(item_ids) - i),
            }
            for i, item in enumerate(item_ids)
        ]
        engine = create_engine(self.stack.runtime.settings.effective_database_url)
        try:
            async with engine.begin() as connection:
                await connection.execute(insert(Interaction), rows)
        finally:
            await engine.dispose()

    async def recommend(self, user_id: str, **fields: Any) -> pb.RecommendResponse:
        request = pb.RecommendRequest(user_id=user_id, **fields)
        response: pb.RecommendResponse = await self.stub.Recommend(
            request, metadata=self.metadata()
        )
        return response

    async def wait_for_version(self, user_id: str, version: str, timeout: float = 15.0) -> None:
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            response = await self.recommend(user_id)
            if response.model_version == version and not response.fallback:
                return
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"{version} not served; last: {response}")
            await asyncio.sleep(0.1)


async def make_shop(stack: RunningStack, n_items: int = 200, prefix: str = "") -> Shop:
    tenant_id = str(uuid.uuid4())
    slug = f"shop-{tenant_id[:8]}"
    prefix = prefix or f"{slug[-4:]}-i"
    ids = [f"{prefix}{i}" for i in range(n_items)]
    now = utcnow()
    await sql(
        stack,
        insert(Tenant).values(
            id=tenant_id,
            name="Shop",
            slug=slug,
            email="a@shop.example",
            status="active",
            plan="free",
            settings={},
            created_at=now,
            updated_at=now,
        ),
    )
    engine = create_engine(stack.runtime.settings.effective_database_url)
    try:
        async with engine.begin() as connection:
            await connection.execute(
                insert(Item),
                [
                    {
                        "tenant_id": tenant_id,
                        "item_id": item,
                        "title": f"Product {item}",
                        "category": CATEGORIES[i % len(CATEGORIES)],
                        "price": float(10 + i),
                        "image_url": f"https://img.example/{item}.jpg",
                        "attributes": {},
                        "updated_at": now,
                    }
                    for i, item in enumerate(ids)
                ],
            )
    finally:
        await engine.dispose()
    return Shop(stack, tenant_id, slug, ids, prefix)


def code_of(error: grpc.aio.AioRpcError) -> grpc.StatusCode:
    return error.code()
