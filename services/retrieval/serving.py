"""Request paths of the retrieval service, between the servicer and the serving state.

Recommend, for a tenant and a validated request:

1. the tenant's route (deployment split) and base (catalog + live popularity), loaded
   on the tenant's first request;
2. the user's version: pinned by the request, else ``choose_version`` (a stable hash of
   tenant and user), else none (no deployment);
3. the cache, keyed by tenant, user, deployment, catalog fingerprint, version and the
   request's digest (a catalog change makes the tenant's cached answers unreachable);
4. the user's recent interactions (fold-in for unseen users; "already seen" filter);
5. the loaded index of that version ranks; no index (no deployment, loading, failed,
   evicted) or no way to personalise (unknown user) → the base's popular items under
   the same filters, ``fallback`` set. The base, not the model's training-time
   popularity: it is live and covers items newer than the model.

Every response gets a fresh ``recommendation_id`` (a cache hit too: attribution is per
impression) and one impression event. No grpc here; protobuf messages are the values.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, replace

from embrec.events.v1 import events_pb2
from embrec.retrieval.v1 import retrieval_service_pb2 as pb
from retriever.engine import FallbackReason, RecommendationResult, TenantModelIndex
from retriever.errors import UnknownItemError
from retriever.filters import FilterSpec
from retriever.foldin import Interaction as RecentItem
from retriever.routing import choose_version
from services.errors import NotFound
from services.retrieval.cache import ResponseCache
from services.retrieval.domain import Route, ServingState, version_label
from services.retrieval.impressions import ImpressionBuffer
from services.retrieval.metrics import RetrievalMetrics
from services.runtime.context import note_cache_hit

__all__ = ["RecommendQuery", "Retrieval"]

logger = logging.getLogger(__name__)

_REASONS = {
    FallbackReason.NO_HISTORY.value: pb.FALLBACK_REASON_UNKNOWN_USER,
    FallbackReason.UNKNOWN_HISTORY.value: pb.FALLBACK_REASON_UNKNOWN_USER,
    FallbackReason.MODEL_UNAVAILABLE.value: pb.FALLBACK_REASON_INDEX_UNAVAILABLE,
    FallbackReason.INDEX_ERROR.value: pb.FALLBACK_REASON_MODEL_ERROR,
}
#: Fallbacks worth caching: they depend only on the user's history (invalidated on
#: their events). Index-unavailable answers must not outlive the loading index.
_CACHEABLE = frozenset({pb.FALLBACK_REASON_UNSPECIFIED, pb.FALLBACK_REASON_UNKNOWN_USER})
_REASON_LABELS = {v: k for k, v in pb.FallbackReason.items()}


@dataclass(frozen=True)
class RecommendQuery:
    """A validated Recommend request (the servicer builds it from the proto)."""

    user_id: str
    count: int
    filters: FilterSpec
    exclude_seen: bool
    recent_item_ids: tuple[str, ...]
    pinned_version: str
    digest: str  # of everything above but the user, for the cache key


def request_digest(message: pb.RecommendRequest) -> str:
    """Digest of what shapes the answer besides tenant and user (cache field)."""
    shape = pb.RecommendRequest()
    shape.CopyFrom(message)
    shape.tenant_id = ""
    shape.user_id = ""
    return hashlib.blake2b(shape.SerializeToString(deterministic=True), digest_size=12).hexdigest()


def new_recommendation_id() -> str:
    return uuid.uuid4().hex


class Retrieval:
    def __init__(
        self,
        state: ServingState,
        cache: ResponseCache,
        impressions: ImpressionBuffer,
        metrics: RetrievalMetrics,
    ) -> None:
        self.state = state
        self.cache = cache
        self.impressions = impressions
        self.metrics = metrics

    # ------------------------------------------------------------------ Recommend
    async def recommend(self, tenant_id: str, query: RecommendQuery) -> pb.RecommendResponse:
        route, base = await self.state.ensure_tenant(tenant_id)
        version = await self._version_for(tenant_id, route, query.user_id, query.pinned_version)
        field = f"{route.deployment_id}:{base.fingerprint}:{version}:{query.digest}"
        if version:
            cached = await self.cache.get(tenant_id, query.user_id, field)
            if cached is not None:
                response = pb.RecommendResponse.FromString(cached)
                response.recommendation_id = new_recommendation_id()
                note_cache_hit()
                self._served(tenant_id, query.user_id, response, cache_hit=True)
                return response

        history = await self.state.history(tenant_id, query.user_id)
        recent = [RecentItem(i) for i in query.recent_item_ids] + history
        spec = query.filters
        if query.exclude_seen and recent:
            spec = replace(spec, exclude_seen_ids=frozenset(r.item_id for r in recent))
        bundle = self.state.bundle_for(tenant_id, version) if version else None
        if bundle is None:
            if version:
                self.state.reload_if_evicted(tenant_id, version)
            reason = (
                pb.FALLBACK_REASON_INDEX_UNAVAILABLE if version else pb.FALLBACK_REASON_NO_MODEL
            )
            result = _rank(base.bundle, query.user_id, query.count, spec, None)
            response = self._response(base.bundle, result, "", reason)
        else:
            result = _rank(bundle, query.user_id, query.count, spec, recent or None)
            served = bundle
            if result.fallback:
                why = result.fallback_reason
                served = base.bundle
                ranked = _rank(served, query.user_id, query.count, spec, None)
                result = replace(ranked, fallback_reason=why)
            response = self._response(served, result, version, _REASONS.get(result.fallback_reason))
        if version and response.fallback_reason in _CACHEABLE:
            await self.cache.put(tenant_id, query.user_id, field, response.SerializeToString())
        response.recommendation_id = new_recommendation_id()
        self._served(tenant_id, query.user_id, response, cache_hit=False)
        return response

    async def _version_for(self, tenant_id: str, route: Route, user_id: str, pinned: str) -> str:
        if pinned:
            version = version_label(pinned)
            if version in route.versions or self.state.bundle_for(tenant_id, version):
                return version
            uri = await self.state.model_exists(tenant_id, version)
            if uri is None:
                raise NotFound("model version", pinned)
            self.state.load_pinned(tenant_id, version, uri)
            return version
        if route.split:
            return choose_version(tenant_id, user_id, route.split)
        return ""

    # --------------------------------------------------------------- SimilarItems
    async def similar_items(
        self,
        tenant_id: str,
        item_id: str,
        count: int,
        filters: FilterSpec,
        user_id: str,
        exclude_seen: bool,
    ) -> pb.SimilarItemsResponse:
        route, base = await self.state.ensure_tenant(tenant_id)
        position = base.bundle.catalog.positions.get(item_id)
        if position is None:
            raise NotFound("item", item_id)
        if user_id and route.split:
            version = choose_version(tenant_id, user_id, route.split)
        elif route.split:
            version = max(route.split, key=lambda vp: vp[1])[0]
        else:
            version = ""
        spec = filters
        if user_id and exclude_seen:
            history = await self.state.history(tenant_id, user_id)
            if history:
                spec = replace(spec, exclude_seen_ids=frozenset(r.item_id for r in history))
        bundle = self.state.bundle_for(tenant_id, version) if version else None
        reason = pb.FALLBACK_REASON_UNSPECIFIED
        result: RecommendationResult | None = None
        if bundle is not None:
            try:
                result = bundle.similar_items(item_id, count, spec)
                reason = _REASONS.get(result.fallback_reason, pb.FALLBACK_REASON_UNSPECIFIED)
            except UnknownItemError:
                reason = pb.FALLBACK_REASON_UNKNOWN_ITEM  # in the catalog, not in the model
        else:
            reason = (
                pb.FALLBACK_REASON_INDEX_UNAVAILABLE if version else pb.FALLBACK_REASON_NO_MODEL
            )
        if result is None or bundle is None:
            # Popular items of the item's category, never the item itself.
            category = base.bundle.catalog.category_of(position)
            categories = frozenset({category}) if category is not None else frozenset()
            spec = replace(
                spec,
                categories_in=spec.categories_in or categories,
                exclude_item_ids=spec.exclude_item_ids | {item_id},
            )
            result = base.bundle.recommend("", count, spec)
            bundle = base.bundle
        recommendation = self._response(
            bundle, result, version if bundle is not base.bundle else "", reason
        )
        response = pb.SimilarItemsResponse(
            items=recommendation.items,
            model_version=recommendation.model_version,
            recommendation_id=new_recommendation_id(),
            fallback=recommendation.fallback,
            fallback_reason=recommendation.fallback_reason,
        )
        self._impression(
            tenant_id,
            user_id,
            response.recommendation_id,
            response.items,
            response.model_version,
            response.fallback,
            response.fallback_reason,
            events_pb2.RECOMMENDATION_SURFACE_SIMILAR_ITEMS,
            cache_hit=False,
        )
        return response

    # --------------------------------------------------------------- PopularItems
    async def popular_items(
        self, tenant_id: str, count: int, category: str
    ) -> pb.PopularItemsResponse:
        _, base = await self.state.ensure_tenant(tenant_id)
        result = base.bundle.popular_items(count, category or None)
        response = pb.PopularItemsResponse(
            items=_items(base.bundle, result), recommendation_id=new_recommendation_id()
        )
        self._impression(
            tenant_id,
            "",
            response.recommendation_id,
            response.items,
            "",
            False,
            pb.FALLBACK_REASON_UNSPECIFIED,
            events_pb2.RECOMMENDATION_SURFACE_POPULAR_ITEMS,
            cache_hit=False,
        )
        return response

    # ------------------------------------------------------------------- helpers
    def _response(
        self,
        bundle: TenantModelIndex,
        result: RecommendationResult,
        version: str,
        reason: pb.FallbackReason | None,
    ) -> pb.RecommendResponse:
        fallback = result.fallback or bool(reason)
        if not fallback:
            reason = pb.FALLBACK_REASON_UNSPECIFIED
        elif not reason:
            reason = pb.FALLBACK_REASON_MODEL_ERROR
        return pb.RecommendResponse(
            items=_items(bundle, result),
            model_version=version,
            fallback=fallback,
            fallback_reason=reason,
        )

    def _served(
        self, tenant_id: str, user_id: str, response: pb.RecommendResponse, *, cache_hit: bool
    ) -> None:
        self._impression(
            tenant_id,
            user_id,
            response.recommendation_id,
            response.items,
            response.model_version,
            response.fallback,
            response.fallback_reason,
            events_pb2.RECOMMENDATION_SURFACE_RECOMMEND,
            cache_hit=cache_hit,
        )

    def _impression(
        self,
        tenant_id: str,
        user_id: str,
        recommendation_id: str,
        items: Iterable[pb.RecommendedItem],
        model_version: str,
        fallback: bool,
        reason: pb.FallbackReason,
        surface: events_pb2.RecommendationSurface,
        *,
        cache_hit: bool,
    ) -> None:
        served = [
            events_pb2.ServedItem(item_id=item.item_id, rank=rank, score=item.score)
            for rank, item in enumerate(items, start=1)
        ]
        self.impressions.add(
            tenant_id,
            events_pb2.RecommendationServed(
                recommendation_id=recommendation_id,
                user_id=user_id,
                items=served,
                model_version=model_version,
                fallback=fallback,
                surface=surface,
                cache_hit=cache_hit,
            ),
        )
        self.metrics.served.labels(
            tenant_id, model_version or "-", _REASON_LABELS.get(reason, "") if fallback else "-"
        ).inc()


#: Up to this many excluded items, exclusions are applied after an unfiltered search.
_EXCLUDE_AFTER_MAX = 1000


def _rank(
    bundle: TenantModelIndex,
    user_id: str,
    count: int,
    spec: FilterSpec,
    recent: list[RecentItem] | None,
) -> RecommendationResult:
    """``bundle.recommend``, with a fast path when the filter only excludes a few items.

    "Already seen" makes nearly every request filtered; through the exact filtered
    search that is a gather and score of the whole catalog. Searching the top
    ``count + |excluded|`` unfiltered and dropping the excluded ones gives the same
    items (the best ``count`` that are not excluded are all in that list), at the cost
    of a plain top-k.
    """
    excluded = spec.exclude_item_ids | spec.exclude_seen_ids
    only_exclusions = spec == FilterSpec(
        exclude_item_ids=spec.exclude_item_ids, exclude_seen_ids=spec.exclude_seen_ids
    )
    if not excluded or not only_exclusions or len(excluded) > _EXCLUDE_AFTER_MAX:
        return bundle.recommend(user_id, count, spec, recent)
    positions = bundle.catalog.positions
    known = sum(1 for item in excluded if item in positions)
    wide = bundle.recommend(user_id, min(count + known, len(positions)) or 1, None, recent)
    kept = [pair for pair in wide.items if pair[0] not in excluded][:count]
    return replace(wide, items=kept)


def _items(bundle: TenantModelIndex, result: RecommendationResult) -> list[pb.RecommendedItem]:
    catalog = bundle.catalog
    positions = catalog.positions
    titles, images = catalog.titles, catalog.image_urls
    out = []
    for item_id, score in result.items:
        p = positions[item_id]
        item = pb.RecommendedItem(
            item_id=item_id,
            score=score,
            title=titles[p] if titles is not None else "",
            category=catalog.category_of(p) or "",
            image_url=images[p] if images is not None else "",
        )
        price = float(catalog.prices[p])
        if price == price:  # NaN: unknown price stays unset
            item.price = price
        out.append(item)
    return out
