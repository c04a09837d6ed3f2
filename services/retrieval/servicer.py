"""The retrieval service's gRPC adapters and its module (servicers + background work).

Who may call what:

* Recommend, SimilarItems, PopularItems: scope ``recommend:read`` (API keys by
  default), on the caller's own tenant; platform admins name the tenant.
* GetTrafficStats: scope ``analytics:read``, same tenant rule.
* GetIndexStatus, ReloadIndexes (internal, not routed by the gateway): platform admins.

Background work of the module: the impression writer, a consumer of ``embrec.models``
(ModelDeployed → reload that tenant's indexes), one of ``embrec.interactions``
(users' recent items for fold-in and "already seen", and cache invalidation) and one
of ``embrec.catalog`` (CatalogChanged → rebuild that tenant's base and re-align its
loaded versions to the new catalog). Each replica consumes with a group of its own:
every replica must see every event.
"""

from __future__ import annotations

import asyncio
import logging
import math
import socket
import uuid
from collections import defaultdict
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
from google.protobuf.timestamp_pb2 import Timestamp
from prometheus_client.registry import Collector

from embrec.events.v1 import events_pb2
from embrec.ingestion.v1 import resources_pb2 as ingestion_pb
from embrec.retrieval.v1 import retrieval_service_pb2 as pb
from embrec.retrieval.v1 import retrieval_service_pb2_grpc as pb_grpc
from retriever.filters import FilterSpec
from retriever.foldin import Interaction as RecentItem
from retriever.index import configure_faiss
from services.app import ServiceContext, WorkingModule
from services.audit.record import record_audit
from services.errors import FieldViolation, InvalidArgument
from services.event_messages import TOPICS, interactions_of, open_envelope
from services.events.bus import EventRecord, Handler
from services.identity.principal import PLATFORM_ADMIN, authenticator_for, source_ip
from services.retrieval.cache import ResponseCache
from services.retrieval.domain import IndexInfo, ServingState
from services.retrieval.impressions import ImpressionBuffer
from services.retrieval.metrics import RetrievalMetrics
from services.retrieval.serving import RecommendQuery, Retrieval, request_digest
from services.retrieval.stats import variant_counts

__all__ = ["RetrievalModule", "build_module"]

logger = logging.getLogger(__name__)

Context = grpc.aio.ServicerContext[Any, Any]

DEFAULT_COUNT = 10
MAX_RECOMMEND_COUNT = 500
MAX_COUNT = 100
MAX_ID_LENGTH = 256
MAX_ID_LIST = 10_000
_ADMINS = frozenset({PLATFORM_ADMIN})
_TYPE_NAMES = {
    ingestion_pb.INTERACTION_TYPE_VIEW: "view",
    ingestion_pb.INTERACTION_TYPE_CLICK: "click",
    ingestion_pb.INTERACTION_TYPE_ADD_TO_CART: "add_to_cart",
    ingestion_pb.INTERACTION_TYPE_PURCHASE: "purchase",
    ingestion_pb.INTERACTION_TYPE_RATING: "rating",
}
_INDEX_TYPES = {"flat": "IndexFlatIP", "hnsw": "IndexHNSWFlat", "ivf": "IndexIVFFlat"}
_STATES = {
    "loading": pb.INDEX_STATE_LOADING,
    "ready": pb.INDEX_STATE_READY,
    "failed": pb.INDEX_STATE_FAILED,
}


# --------------------------------------------------------------------------- validation


def _count(value: int, maximum: int) -> int:
    if value == 0:
        return DEFAULT_COUNT
    if not 1 <= value <= maximum:
        raise InvalidArgument(
            f"count must be between 1 and {maximum} (0 means {DEFAULT_COUNT}); got {value}.",
            violations=[FieldViolation("count", f"1 to {maximum}")],
        )
    return value


def _required_id(value: str, name: str) -> str:
    value = value.strip()
    if not value:
        raise InvalidArgument(f"{name} is required.", violations=[FieldViolation(name, "required")])
    if len(value) > MAX_ID_LENGTH:
        raise InvalidArgument(
            f"{name} exceeds {MAX_ID_LENGTH} characters.",
            violations=[FieldViolation(name, f"at most {MAX_ID_LENGTH} characters")],
        )
    return value


def _filters(message: pb.RecommendationFilters) -> tuple[FilterSpec, bool]:
    """(FilterSpec, exclude_seen) from the proto; InvalidArgument naming the field."""
    violations = []
    for name in ("min_price", "max_price"):
        if message.HasField(name) and not math.isfinite(getattr(message, name)):
            violations.append(FieldViolation(f"filters.{name}", "must be a finite number"))
    if (
        message.HasField("min_price")
        and message.HasField("max_price")
        and message.min_price > message.max_price
    ):
        violations.append(FieldViolation("filters.min_price", "must not exceed max_price"))
    for name in ("item_ids", "exclude_item_ids"):
        if len(getattr(message, name)) > MAX_ID_LIST:
            violations.append(FieldViolation(f"filters.{name}", f"at most {MAX_ID_LIST} ids"))
    if violations:
        raise InvalidArgument("The filters are not valid.", violations=violations)
    categories = {c for c in (message.category, *message.categories) if c}
    spec = FilterSpec(
        categories_in=frozenset(categories),
        categories_not_in=frozenset(c for c in message.exclude_categories if c),
        min_price=message.min_price if message.HasField("min_price") else None,
        max_price=message.max_price if message.HasField("max_price") else None,
        include_item_ids=frozenset(message.item_ids) if message.item_ids else None,
        exclude_item_ids=frozenset(message.exclude_item_ids),
    )
    exclude_seen = message.exclude_seen if message.HasField("exclude_seen") else True
    return spec, exclude_seen


def _timestamp(value: datetime | None) -> Timestamp | None:
    if value is None:
        return None
    stamp = Timestamp()
    stamp.FromDatetime(value)
    return stamp


# --------------------------------------------------------------------------- servicers


class RetrievalServicer(pb_grpc.RetrievalServiceServicer):
    def __init__(self, ctx: ServiceContext, retrieval: Retrieval) -> None:
        self._auth = authenticator_for(ctx)
        self._retrieval = retrieval

    async def Recommend(
        self, request: pb.RecommendRequest, context: Context
    ) -> pb.RecommendResponse:
        principal = await self._auth.require(context, scope="recommend:read")
        tenant = await self._auth.resolve_tenant(principal, request.tenant_id)
        user_id = _required_id(request.user_id, "user_id")
        count = _count(request.count, MAX_RECOMMEND_COUNT)
        spec, exclude_seen = _filters(request.filters)
        if len(request.recent_item_ids) > 1000:
            raise InvalidArgument(
                "recent_item_ids holds at most 1000 ids.",
                violations=[FieldViolation("recent_item_ids", "at most 1000 ids")],
            )
        query = RecommendQuery(
            user_id=user_id,
            count=count,
            filters=spec,
            exclude_seen=exclude_seen,
            recent_item_ids=tuple(request.recent_item_ids),
            pinned_version=request.model_version.strip(),
            digest=request_digest(request),
        )
        return await self._retrieval.recommend(tenant.id, query)

    async def SimilarItems(
        self, request: pb.SimilarItemsRequest, context: Context
    ) -> pb.SimilarItemsResponse:
        principal = await self._auth.require(context, scope="recommend:read")
        tenant = await self._auth.resolve_tenant(principal, request.tenant_id)
        item_id = _required_id(request.item_id, "item_id")
        count = _count(request.count, MAX_COUNT)
        spec, exclude_seen = _filters(request.filters)
        user_id = request.user_id.strip()
        if len(user_id) > MAX_ID_LENGTH:
            _required_id(user_id, "user_id")
        return await self._retrieval.similar_items(
            tenant.id, item_id, count, spec, user_id, exclude_seen
        )

    async def PopularItems(
        self, request: pb.PopularItemsRequest, context: Context
    ) -> pb.PopularItemsResponse:
        principal = await self._auth.require(context, scope="recommend:read")
        tenant = await self._auth.resolve_tenant(principal, request.tenant_id)
        count = _count(request.count, MAX_COUNT)
        return await self._retrieval.popular_items(tenant.id, count, request.category.strip())


class RetrievalInternalServicer(pb_grpc.RetrievalInternalServiceServicer):
    def __init__(self, ctx: ServiceContext, retrieval: Retrieval, replica: str) -> None:
        self._ctx = ctx
        self._auth = authenticator_for(ctx)
        self._retrieval = retrieval
        self._replica = replica

    def _status(self, info: IndexInfo) -> pb.IndexStatus:
        message = pb.IndexStatus(
            tenant_id=info.tenant_id,
            model_version=info.model_version,
            state=_STATES.get(info.state, pb.INDEX_STATE_UNSPECIFIED),
            error_message=info.error,
            replica=self._replica,
        )
        bundle = self._retrieval.state.registry.peek(info.tenant_id, info.model_version)
        if info.state == "ready" and bundle is None:
            message.state = pb.INDEX_STATE_UNSPECIFIED
            message.error_message = "evicted by the memory cap; reloads on the next request"
        if bundle is not None and info.state == "ready":
            index = bundle.index
            if index is not None:
                message.index_type = _INDEX_TYPES.get(index.spec.kind, index.spec.kind)
                message.item_count = index.ntotal
                message.dimension = index.spec.dim
                message.shard_count = index.spec.n_shards
                message.devices.extend(["gpu"] if index.on_gpu else ["cpu"])
            message.memory_bytes = bundle.nbytes
            stamp = _timestamp(info.loaded_at)
            if stamp is not None:
                message.load_time.CopyFrom(stamp)
        return message

    async def GetIndexStatus(
        self, request: pb.GetIndexStatusRequest, context: Context
    ) -> pb.GetIndexStatusResponse:
        await self._auth.require(context, roles=_ADMINS)
        infos = self._retrieval.state.indexes(request.tenant_id.strip())
        return pb.GetIndexStatusResponse(indexes=[self._status(i) for i in infos])

    async def ReloadIndexes(
        self, request: pb.ReloadIndexesRequest, context: Context
    ) -> pb.ReloadIndexesResponse:
        principal = await self._auth.require(context, roles=_ADMINS)
        state = self._retrieval.state
        if request.tenant_id.strip():
            tenant = await self._auth.resolve_tenant(principal, request.tenant_id)
            tenants = [tenant.id]
        else:
            tenants = state.tenants
        for tenant_id in tenants:
            await state.ensure_tenant(tenant_id)
            await state.reload(tenant_id)
        async with self._ctx.sessions() as session, session.begin():
            for tenant_id in tenants or [""]:
                record_audit(
                    session,
                    tenant_id=tenant_id,
                    actor=principal.subject,
                    impersonator=principal.impersonator or "",
                    action="retrieval.indexes.reload",
                    target=f"tenants/{tenant_id}" if tenant_id else "retrieval",
                    source_ip=source_ip(context),
                    metadata={"replica": self._replica},
                )
        infos = [i for t in tenants for i in state.indexes(t)]
        return pb.ReloadIndexesResponse(indexes=[self._status(i) for i in infos])

    async def GetTrafficStats(
        self, request: pb.GetTrafficStatsRequest, context: Context
    ) -> pb.GetTrafficStatsResponse:
        principal = await self._auth.require(context, scope="analytics:read")
        tenant = await self._auth.resolve_tenant(principal, request.tenant_id)
        end = (
            request.end_time.ToDatetime(tzinfo=UTC)
            if request.HasField("end_time")
            else datetime.now(UTC)
        )
        start = (
            request.start_time.ToDatetime(tzinfo=UTC)
            if request.HasField("start_time")
            else end - timedelta(days=30)
        )
        if start >= end:
            raise InvalidArgument(
                "start_time must be before end_time.",
                violations=[FieldViolation("start_time", "must be before end_time")],
            )
        async with self._ctx.sessions() as session:
            counts = await variant_counts(session, tenant.id, start, end)
        state = self._retrieval.state
        if not state.serves(tenant.id):
            await state.ensure_tenant(tenant.id)
            await state.reload(tenant.id)
        route = state.route(tenant.id)
        split = {v: p for v, p in route.split}
        by_version = {c.model_version: c for c in counts}
        variants = []
        for version in sorted(set(split) | set(by_version)):
            c = by_version.get(version)
            variants.append(
                pb.VariantStats(
                    model_version=version,
                    traffic_percent=round(split.get(version, 0)),
                    served_count=c.served if c else 0,
                    fallback_count=c.fallback if c else 0,
                    clicked_count=c.clicked if c else 0,
                    click_through_rate=c.ctr if c else 0.0,
                )
            )
        return pb.GetTrafficStatsResponse(variants=variants, deployment_id=route.deployment_id)


# --------------------------------------------------------------------------- bus consumers


def _deployed_tenant(record: EventRecord) -> str:
    envelope = open_envelope(record.payload)
    payload = events_pb2.ModelDeployed()
    if not envelope.payload.Unpack(payload):
        return ""
    return envelope.tenant_id or payload.deployment.tenant_id


def _catalog_tenant(record: EventRecord) -> str:
    envelope = open_envelope(record.payload)
    payload = events_pb2.CatalogChanged()
    if not envelope.payload.Unpack(payload):
        return ""
    return envelope.tenant_id


async def _on_interactions(retrieval: Retrieval, record: EventRecord) -> None:
    envelope = open_envelope(record.payload)
    payload = events_pb2.InteractionsRecorded()
    if not envelope.payload.Unpack(payload) or not envelope.tenant_id:
        return
    by_user: dict[str, list[RecentItem]] = defaultdict(list)
    ordered = sorted(interactions_of(payload), key=lambda i: i.timestamp.ToNanoseconds())
    for event in ordered:
        by_user[event.user_id].append(
            RecentItem(event.item_id, _TYPE_NAMES.get(event.interaction_type, "view"))
        )
    for user_id, items in by_user.items():
        retrieval.state.record(envelope.tenant_id, user_id, items)
    await retrieval.cache.invalidate_users(envelope.tenant_id, by_user)


# --------------------------------------------------------------------------- the module


@dataclass
class RetrievalModule(WorkingModule):
    retrieval: Retrieval | None = None
    collectors: list[Collector] = field(default_factory=list)


def build_module(ctx: ServiceContext) -> RetrievalModule:
    from services.audit.consumer import bus_consumer

    settings = ctx.settings
    # One OpenMP thread per serving process; scale with processes (docs/retriever.md).
    configure_faiss(threads=1)
    metrics = RetrievalMetrics()
    cap = settings.retrieval_memory_cap_mb * 1024 * 1024 or None
    state = ServingState(
        ctx.sessions,
        settings.effective_artifact_dir,
        memory_cap_bytes=cap,
        base_ttl=settings.retrieval_catalog_refresh_seconds,
        on_load=lambda outcome: metrics.index_loads.labels(outcome).inc(),
        load_models=not settings.retrieval_popular_only,
    )
    metrics.watch_memory(state.registry.memory_by_tenant, lambda: cap or 0)
    client = None
    if settings.redis_url:
        from redis.asyncio import Redis

        # Short timeouts: a slow Redis must cost less than computing the answer.
        client = Redis.from_url(
            settings.redis_url, socket_timeout=0.05, socket_connect_timeout=0.05
        )
    cache = ResponseCache(
        client,
        metrics,
        ttl_seconds=settings.retrieval_cache_ttl_seconds,
        local_seconds=settings.retrieval_local_cache_seconds,
    )
    impressions = ImpressionBuffer(ctx.sessions, metrics)
    retrieval = Retrieval(state, cache, impressions, metrics)
    replica = f"{socket.gethostname()}:{settings.grpc_port}"
    public = RetrievalServicer(ctx, retrieval)
    internal = RetrievalInternalServicer(ctx, retrieval, replica)
    group = f"retrieval-{uuid.uuid4().hex[:12]}"

    def watch(
        suffix: str, event: str, handle: Handler
    ) -> Callable[[asyncio.Event], Coroutine[Any, Any, None]]:
        """A background task consuming ``event``'s topic as this replica's own group.

        From the end of the log: a replica loads current state when it starts, so it
        only needs what changes after.
        """

        async def run(stop: asyncio.Event) -> None:
            consumer = bus_consumer(
                settings, ctx.sessions, f"{group}-{suffix}", [TOPICS[event]], from_beginning=False
            )
            await consumer.run(handle, stop)

        return run

    async def on_deployed(record: EventRecord) -> None:
        tenant_id = _deployed_tenant(record)
        if tenant_id and state.serves(tenant_id):
            # In the background: a large index must not hold up other tenants' events.
            await state.reload(tenant_id, wait=False)

    async def on_interactions(record: EventRecord) -> None:
        await _on_interactions(retrieval, record)

    async def on_catalog(record: EventRecord) -> None:
        tenant_id = _catalog_tenant(record)
        if tenant_id and state.serves(tenant_id):
            # Background and coalesced: an import of 50k items is 50 events.
            state.refresh_base(tenant_id)

    async def close() -> None:
        await cache.close()
        await asyncio.to_thread(state.close)

    def register(server: grpc.aio.Server) -> None:
        pb_grpc.add_RetrievalServiceServicer_to_server(public, server)
        pb_grpc.add_RetrievalInternalServiceServicer_to_server(internal, server)

    services = pb.DESCRIPTOR.services_by_name
    return RetrievalModule(
        name="retrieval",
        names=[
            services["RetrievalService"].full_name,
            services["RetrievalInternalService"].full_name,
        ],
        register=register,
        background=[
            impressions.run,
            watch("models", "ModelDeployed", on_deployed),
            watch("interactions", "InteractionsRecorded", on_interactions),
            watch("catalog", "CatalogChanged", on_catalog),
        ],
        on_stop=[close],
        retrieval=retrieval,
        collectors=metrics.collectors(),
    )
