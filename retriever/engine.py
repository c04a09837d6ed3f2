"""One tenant's model version, ready to serve: embeddings, catalog, popularity, index.

``TenantModelIndex`` is immutable once built, which is what lets the registry swap
versions atomically: a reader holding a reference keeps a consistent object for the
whole request, whatever the registry does meanwhile.

Request paths of :meth:`TenantModelIndex.recommend`:

1. known user (row in the trained user matrix) → user embedding → filtered search;
   when the model's artifacts chose a recent-category boost (``scoring.json``,
   ``retriever.recency``) and the request carries the user's recent items, each item
   scores ``<user, item> + weight * share of its category among the recent items``,
   exactly as the trainer's evaluation scored it (one filtered search per boosted
   category plus one over the rest: the boost is constant within a category);
2. unknown user with recent items → fold-in embedding (``retriever.foldin``) →
   filtered search;
3. no usable history, or no model/index, or a faiss failure → time-decayed popular
   items matching the same filters, ``fallback=True`` with the reason.

Artifacts (``load_from_artifacts``): the trainer writes ``.npy`` matrices and JSON id
maps. The loader accepts several spellings, because the trainer's exact names are
owned elsewhere; see its docstring. Rows are aligned to the catalog: items without an
embedding or missing from the catalog are left out of this model index (they cannot
be scored; deleted products must not be served).

Catalog changes (:meth:`TenantModelIndex.with_catalog`): the index rows are the model's
items, so a newer catalog only replaces the attribute columns (category, price,
title, image), re-read by item id in the model's row order; embeddings and the faiss
index are shared with the old bundle. Items new to the catalog are not rankable by
this model (no embedding); an item the model ranks that left the catalog needs a
reload from the artifacts (its row must go), which ``with_catalog`` reports as None.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from retriever.errors import ArtifactError, InvalidRequestError, UnknownItemError
from retriever.filters import Catalog, FilterPolicy, FilterSpec, filtered_search
from retriever.foldin import FoldIn, Interaction
from retriever.index import IndexPolicy, ShardedIndex
from retriever.popularity import Popularity
from retriever.recency import RecentCategoryBoost, category_shares

__all__ = [
    "FallbackReason",
    "RecommendationResult",
    "TenantModelIndex",
    "load_from_artifacts",
]

logger = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float32]


class FallbackReason(StrEnum):
    """Why a response holds popular items instead of personalised ones."""

    NONE = ""
    NO_HISTORY = "no_history"  # unknown user, no recent items
    UNKNOWN_HISTORY = "unknown_recent_items"  # recent items, none with an embedding
    MODEL_UNAVAILABLE = "model_unavailable"  # no embeddings / index for this version
    INDEX_ERROR = "index_error"  # the search itself failed


@dataclass(frozen=True)
class RecommendationResult:
    """Items best first as (item_id, score); ``source`` says which path produced them."""

    items: list[tuple[str, float]]
    fallback: bool = False
    fallback_reason: str = ""
    source: str = "user_embedding"  # | "fold_in" | "item_embedding" | "popularity"
    strategy: str = ""  # filtered-search strategy, for observability


@dataclass(frozen=True, eq=False)
class TenantModelIndex:
    """Serving bundle for one (tenant, model version). Build with :meth:`build`."""

    tenant_id: str
    model_version: str
    catalog: Catalog
    popularity: Popularity
    item_embeddings: FloatArray | None = None
    user_embeddings: FloatArray | None = None
    user_positions: Mapping[str, int] = field(default_factory=dict)
    index: ShardedIndex | None = None
    fold_in: FoldIn = field(default_factory=FoldIn)
    filter_policy: FilterPolicy = field(default_factory=FilterPolicy)
    #: Which catalog state the attributes were read from (the caller's fingerprint).
    catalog_tag: str = ""
    #: Known users' recent-category boost, as the trainer chose it (weight 0 = off).
    recent_category: RecentCategoryBoost = field(default_factory=RecentCategoryBoost)

    def __post_init__(self) -> None:
        n = len(self.catalog)
        if len(self.popularity) != n:
            raise ArtifactError("popularity must have one score per catalog item")
        if self.item_embeddings is not None and self.item_embeddings.shape[0] != n:
            raise ArtifactError("item embeddings must have one row per catalog item")
        if self.index is not None and self.index.ntotal != n:
            raise ArtifactError("index size does not match the catalog")
        if self.user_embeddings is not None:
            rows = self.user_embeddings.shape[0]
            if any(not 0 <= p < rows for p in self.user_positions.values()):
                raise ArtifactError("user id map points outside the user embeddings")

    # ------------------------------------------------------------------ build
    @classmethod
    def build(
        cls,
        tenant_id: str,
        model_version: str,
        catalog: Catalog,
        item_embeddings: npt.ArrayLike | None,
        *,
        user_embeddings: npt.ArrayLike | None = None,
        user_ids: Sequence[str] = (),
        popularity: Popularity | None = None,
        index_policy: IndexPolicy | None = None,
        index: ShardedIndex | None = None,
        fold_in: FoldIn | None = None,
        filter_policy: FilterPolicy | None = None,
        catalog_tag: str = "",
        recent_category: RecentCategoryBoost | None = None,
    ) -> TenantModelIndex:
        """Bundle arrays aligned with ``catalog`` (row i ↔ ``catalog.item_ids[i]``)."""
        items = None
        if item_embeddings is not None:
            items = np.ascontiguousarray(np.asarray(item_embeddings, dtype=np.float32))
            if index is None:
                index = ShardedIndex.build(items, policy=index_policy)
            else:
                items = index.vectors
        users = None
        if user_embeddings is not None:
            users = np.ascontiguousarray(np.asarray(user_embeddings, dtype=np.float32))
            if len(user_ids) != users.shape[0]:
                raise ArtifactError("user ids must have one entry per user embedding row")
        return cls(
            tenant_id=tenant_id,
            model_version=model_version,
            catalog=catalog,
            popularity=popularity or Popularity.uniform(len(catalog)),
            item_embeddings=items,
            user_embeddings=users,
            user_positions={u: i for i, u in enumerate(user_ids)},
            index=index if items is not None else None,
            fold_in=fold_in or FoldIn(),
            filter_policy=filter_policy or FilterPolicy(),
            catalog_tag=catalog_tag,
            recent_category=recent_category or RecentCategoryBoost(),
        )

    def with_catalog(self, catalog: Catalog, catalog_tag: str = "") -> TenantModelIndex | None:
        """This model with its items' attributes read from ``catalog`` (see module doc).

        Shares embeddings, index and popularity with ``self``. None when an item of this
        model is no longer in ``catalog``: its row must leave the index, which only a
        reload from the artifacts does.
        """
        positions = catalog.positions
        try:
            rows = [positions[item] for item in self.catalog.item_ids]
        except KeyError:
            return None
        return dataclasses.replace(self, catalog=catalog.take(rows), catalog_tag=catalog_tag)

    # ---------------------------------------------------------------- memory
    @cached_property
    def nbytes(self) -> int:
        """Approximate resident bytes (arrays, faiss structures, id strings)."""
        total = self.catalog.categories.nbytes + self.catalog.prices.nbytes
        total += self.popularity.scores.nbytes
        total += sum(sys.getsizeof(s) for s in self.catalog.item_ids)
        for col in (self.catalog.titles, self.catalog.image_urls):
            if col is not None:
                total += sum(sys.getsizeof(s) for s in col)
        if self.item_embeddings is not None:
            total += self.item_embeddings.nbytes
        if self.user_embeddings is not None:
            total += self.user_embeddings.nbytes
        total += sum(sys.getsizeof(u) + 100 for u in self.user_positions)  # ~dict entry
        if self.index is not None:
            total += self.index.nbytes
        return total

    # --------------------------------------------------------------- serving
    def recommend(
        self,
        user_id: str,
        count: int,
        filters: FilterSpec | None = None,
        recent_items: Sequence[str | Interaction] | None = None,
    ) -> RecommendationResult:
        """Top-``count`` items for a user, exact under ``filters``; see module docstring."""
        _check_count(count)
        mask = self._mask(filters)
        if self.index is None or self.item_embeddings is None:
            return self._popular(count, mask, FallbackReason.MODEL_UNAVAILABLE)
        query: FloatArray | None = None
        source = "user_embedding"
        pos = self.user_positions.get(user_id)
        if pos is not None and self.user_embeddings is not None:
            query = self.user_embeddings[pos]
            if self.recent_category.active and recent_items:
                shares = category_shares(
                    (r.item_id if isinstance(r, Interaction) else r for r in recent_items),
                    self._category_code,
                    self.recent_category,
                )
                if shares:
                    return self._boosted_search(query, count, mask, shares)
        elif recent_items:
            query = self.fold_in.embed(recent_items, self.item_embeddings, self.catalog.positions)
            source = "fold_in"
            if query is None:
                return self._popular(count, mask, FallbackReason.UNKNOWN_HISTORY)
        else:
            return self._popular(count, mask, FallbackReason.NO_HISTORY)
        return self._search(query, count, mask, source)

    def similar_items(
        self, item_id: str, count: int, filters: FilterSpec | None = None
    ) -> RecommendationResult:
        """Items closest to ``item_id`` by inner product, the item itself excluded.

        Raises :class:`UnknownItemError` when the item is not in this model index.
        """
        _check_count(count)
        pos = self.catalog.positions.get(item_id)
        if pos is None:
            raise UnknownItemError(item_id)
        mask = self._mask(filters)
        if mask is None:
            mask = np.ones(len(self.catalog), dtype=np.bool_)
        mask[pos] = False
        if self.index is None or self.item_embeddings is None:
            return self._popular(count, mask, FallbackReason.MODEL_UNAVAILABLE)
        return self._search(self.item_embeddings[pos], count, mask, "item_embedding")

    def popular_items(self, count: int, category: str | None = None) -> RecommendationResult:
        """Most popular items (time-decayed), optionally within one category."""
        _check_count(count)
        mask = None
        if category is not None:
            mask = self.catalog.mask(FilterSpec(categories_in=frozenset({category})))
        pos, scores = self.popularity.top(count, mask)
        return RecommendationResult(
            items=self._pairs(pos, scores), source="popularity", strategy="popularity"
        )

    # --------------------------------------------------------------- helpers
    def _mask(self, filters: FilterSpec | None) -> npt.NDArray[np.bool_] | None:
        if filters is None or filters.is_empty:
            return None
        return self.catalog.mask(filters)

    def _search(
        self,
        query: FloatArray,
        count: int,
        mask: npt.NDArray[np.bool_] | None,
        source: str,
    ) -> RecommendationResult:
        assert self.index is not None
        try:
            res = filtered_search(self.index, query, count, mask, policy=self.filter_policy)
        except Exception:  # the fallback exists for exactly this
            logger.exception(
                "search failed for tenant %s model %s", self.tenant_id, self.model_version
            )
            return self._popular(count, mask, FallbackReason.INDEX_ERROR)
        return RecommendationResult(
            items=self._pairs(res.positions, res.scores), source=source, strategy=res.strategy
        )

    def _category_code(self, item_id: str) -> int | None:
        pos = self.catalog.positions.get(item_id)
        return None if pos is None else int(self.catalog.categories[pos])

    def _boosted_search(
        self,
        query: FloatArray,
        count: int,
        mask: npt.NDArray[np.bool_] | None,
        shares: Mapping[int, float],
    ) -> RecommendationResult:
        """Top ``count`` by ``<query, item> + weight * shares[category(item)]``.

        Exact: the boost is constant within a category, so the best ``count`` of each
        boosted category and of all other items (boost 0), merged, hold the answer.
        """
        assert self.index is not None
        weight = self.recent_category.weight
        codes = self.catalog.categories
        allowed = np.ones(len(codes), np.bool_) if mask is None else mask
        boosted = np.isin(codes, np.fromiter(shares, dtype=codes.dtype, count=len(shares)))
        parts: list[tuple[npt.NDArray[np.bool_], float]] = [
            (allowed & (codes == code), weight * share) for code, share in shares.items()
        ]
        parts.append((allowed & ~boosted, 0.0))
        positions: list[npt.NDArray[np.int64]] = []
        scores: list[npt.NDArray[np.float64]] = []
        try:
            for part, bonus in parts:
                if not part.any():
                    continue
                res = filtered_search(self.index, query, count, part, policy=self.filter_policy)
                positions.append(res.positions)
                scores.append(res.scores.astype(np.float64) + bonus)
        except Exception:
            logger.exception(
                "search failed for tenant %s model %s", self.tenant_id, self.model_version
            )
            return self._popular(count, mask, FallbackReason.INDEX_ERROR)
        if not positions:
            return RecommendationResult(items=[], strategy="category_boost")
        all_pos, all_scores = np.concatenate(positions), np.concatenate(scores)
        best = np.argsort(-all_scores, kind="stable")[:count]
        return RecommendationResult(
            items=self._pairs(all_pos[best], all_scores[best]), strategy="category_boost"
        )

    def _popular(
        self, count: int, mask: npt.NDArray[np.bool_] | None, reason: FallbackReason
    ) -> RecommendationResult:
        pos, scores = self.popularity.top(count, mask)
        return RecommendationResult(
            items=self._pairs(pos, scores),
            fallback=True,
            fallback_reason=reason.value,
            source="popularity",
            strategy="popularity",
        )

    def _pairs(
        self, positions: npt.NDArray[np.int64], scores: npt.NDArray[Any]
    ) -> list[tuple[str, float]]:
        ids = self.catalog.item_ids
        return [(ids[int(p)], float(s)) for p, s in zip(positions, scores, strict=True)]


def _check_count(count: int) -> None:
    if count <= 0:
        raise InvalidRequestError(f"count must be positive, got {count}")


# ------------------------------------------------------------------ artifacts
_ITEM_EMB = ("item_embeddings.npy", "item_emb.npy", "items.npy")
_USER_EMB = ("user_embeddings.npy", "user_emb.npy", "users.npy")
_ITEM_IDS = ("item_ids.json", "item_id_map.json", "item_map.json")
_USER_IDS = ("user_ids.json", "user_id_map.json", "user_map.json")
_POPULARITY = ("popularity.json", "item_popularity.json")
_POPULARITY_NPY = ("popularity.npy", "item_popularity.npy")
_MANIFEST = "manifest.json"


def _first(directory: Path, names: Sequence[str]) -> Path | None:
    return next((directory / n for n in names if (directory / n).is_file()), None)


def _verify_manifest(directory: Path) -> dict[str, Any]:
    """Check the sha256 of every file a trainer manifest lists (if there is one).

    The trainer (``trainer/artifacts.py``) writes ``manifest.json`` with
    ``{"files": {name: {"sha256": ...}}, "version": ...}``; a half-written or
    bit-flipped embedding file must never be served.
    """
    path = directory / _MANIFEST
    if not path.is_file():
        return {}
    try:
        manifest: dict[str, Any] = json.loads(path.read_text())
    except ValueError as exc:
        raise ArtifactError(f"{path}: unreadable manifest: {exc}") from exc
    for name, meta in dict(manifest.get("files", {})).items():
        target = directory / name
        if not target.is_file():
            raise ArtifactError(f"{target}: listed in the manifest but missing")
        digest = hashlib.sha256()
        with target.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
        if digest.hexdigest() != meta.get("sha256"):
            raise ArtifactError(f"{target}: sha256 does not match the manifest")
    return manifest


def parse_id_map(raw: Any, n_rows: int) -> list[str]:
    """Row → id list from any of the accepted id-map shapes.

    Accepted: ``["a", "b"]`` (row order); ``{"a": 0, "b": 1}`` (id → row);
    ``{"0": "a", "1": "b"}`` (row → id); any of those under a key ``ids``,
    ``item_ids``, ``user_ids``, ``id_to_row``, ``row_to_id`` or ``mapping``.
    Ids are turned into strings.
    """
    if isinstance(raw, dict):
        for key in ("ids", "item_ids", "user_ids", "id_to_row", "row_to_id", "mapping"):
            if key in raw and isinstance(raw[key], list | dict):
                return parse_id_map(raw[key], n_rows)
    if isinstance(raw, list):
        ids = [str(x) for x in raw]
    elif isinstance(raw, dict):
        values = list(raw.values())
        if all(isinstance(v, int) and not isinstance(v, bool) for v in values):
            ids = [""] * len(raw)
            for key, row in raw.items():
                if not 0 <= row < len(raw):
                    raise ArtifactError(f"row {row} out of range in id map")
                ids[row] = str(key)
        elif all(str(k).isdigit() for k in raw):
            ids = [""] * len(raw)
            for key, value in raw.items():
                row = int(key)
                if not 0 <= row < len(raw):
                    raise ArtifactError(f"row {row} out of range in id map")
                ids[row] = str(value)
        else:
            raise ArtifactError("unrecognised id map: expected a list or an id/row mapping")
    else:
        raise ArtifactError("unrecognised id map: expected a list or an id/row mapping")
    if len(ids) != n_rows:
        raise ArtifactError(f"id map has {len(ids)} entries for {n_rows} embedding rows")
    if len(set(ids)) != len(ids):
        raise ArtifactError("id map holds duplicate ids or missing rows")
    return ids


def parse_popularity(raw: Any) -> dict[str, float]:
    """{item_id: score} from ``{id: score}``, ``[[id, score], ...]``,
    ``[{"item_id": id, "score": s}, ...]`` or any of those under ``scores``/``items``."""
    if isinstance(raw, dict):
        for key in ("scores", "items", "popularity"):
            if key in raw and isinstance(raw[key], list | dict):
                return parse_popularity(raw[key])
        return {str(k): float(v) for k, v in raw.items()}
    if isinstance(raw, list):
        out: dict[str, float] = {}
        for entry in raw:
            if isinstance(entry, dict):
                item = entry.get("item_id", entry.get("id"))
                score = entry.get("score", entry.get("popularity", 0.0))
                out[str(item)] = float(score if score is not None else 0.0)
            else:
                out[str(entry[0])] = float(entry[1])
        return out
    raise ArtifactError("unrecognised popularity file")


def load_from_artifacts(
    directory: str | Path,
    catalog: Catalog,
    *,
    tenant_id: str = "",
    model_version: str | None = None,
    index_policy: IndexPolicy | None = None,
    fold_in: FoldIn | None = None,
    filter_policy: FilterPolicy | None = None,
    catalog_tag: str = "",
) -> TenantModelIndex:
    """Load a trainer's output directory into a :class:`TenantModelIndex`.

    Files (first existing name wins):

    * item embeddings: ``item_embeddings.npy`` | ``item_emb.npy`` | ``items.npy``
      (required, float n×d);
    * item ids: ``item_ids.json`` | ``item_id_map.json`` | ``item_map.json``
      (required; shapes in :func:`parse_id_map`);
    * user embeddings + ids: ``user_embeddings.npy`` … / ``user_ids.json`` … (optional
      together: without them every user goes through fold-in or popularity);
    * popularity: ``popularity.json`` | ``item_popularity.json`` (shapes in
      :func:`parse_popularity`) or ``popularity.npy`` | ``item_popularity.npy`` (one
      score per embedding row, e.g. the trainer's train counts); optional, without it
      the fallback ranks by catalog order;
    * ``manifest.json`` (optional): every listed file's sha256 is checked first;
    * ``scoring.json`` (optional): ``{"recent_category": {...}}``, the boost the trainer
      chose (``retriever.recency``); without it known users get the plain dot product;
    * ``index/`` with ``index_spec.json`` from :meth:`ShardedIndex.save` (optional;
      used when no catalog re-alignment was needed, else the index is rebuilt).

    ``model_version`` defaults to the manifest's ``version``, else the directory name.
    """
    src = Path(directory)
    manifest = _verify_manifest(src)
    item_path = _first(src, _ITEM_EMB)
    item_ids_path = _first(src, _ITEM_IDS)
    if item_path is None or item_ids_path is None:
        raise ArtifactError(f"{src}: item embeddings and item id map are required")
    emb = np.load(item_path, mmap_mode=None)
    if emb.ndim != 2:
        raise ArtifactError(f"{item_path}: expected a 2-D matrix, got shape {emb.shape}")
    emb_ids = parse_id_map(json.loads(item_ids_path.read_text()), emb.shape[0])

    # Align rows: keep catalog items that have an embedding, in catalog order.
    row_of = {item: r for r, item in enumerate(emb_ids)}
    keep = [i for i, item in enumerate(catalog.item_ids) if item in row_of]
    rows = np.fromiter((row_of[catalog.item_ids[i]] for i in keep), dtype=np.int64)
    identity = len(keep) == len(catalog) == emb.shape[0] and bool(
        np.array_equal(rows, np.arange(emb.shape[0]))
    )
    dropped_catalog = len(catalog) - len(keep)
    dropped_emb = emb.shape[0] - len(keep)
    if dropped_catalog or dropped_emb:
        logger.warning(
            "%s: %d catalog items lack an embedding, %d embedded items are not in the catalog",
            src,
            dropped_catalog,
            dropped_emb,
        )
    sub_catalog = catalog if len(keep) == len(catalog) else catalog.take(keep)
    items = np.ascontiguousarray(emb if identity else emb[rows], dtype=np.float32)

    users = None
    user_ids: list[str] = []
    user_path, user_ids_path = _first(src, _USER_EMB), _first(src, _USER_IDS)
    if user_path is not None and user_ids_path is not None:
        users = np.load(user_path).astype(np.float32, copy=False)
        user_ids = parse_id_map(json.loads(user_ids_path.read_text()), users.shape[0])
        if users.ndim != 2 or users.shape[1] != items.shape[1]:
            raise ArtifactError("user and item embeddings must share the dimension")

    pop_path = _first(src, _POPULARITY)
    pop_npy = _first(src, _POPULARITY_NPY)
    if pop_path is not None:
        popularity = Popularity.from_mapping(
            parse_popularity(json.loads(pop_path.read_text())), sub_catalog.positions
        )
    elif pop_npy is not None:
        counts = np.load(pop_npy).astype(np.float64).ravel()
        if counts.shape[0] != emb.shape[0]:
            raise ArtifactError(f"{pop_npy}: expected one score per embedding row")
        popularity = Popularity(np.ascontiguousarray(counts[rows]))
    else:
        popularity = Popularity.uniform(len(sub_catalog))

    index = None
    if identity and (src / "index" / "index_spec.json").is_file():
        index = ShardedIndex.load(src / "index", items)

    recent_category = None
    if (src / "scoring.json").is_file():
        scoring = json.loads((src / "scoring.json").read_text())
        recent_category = RecentCategoryBoost.from_json(scoring.get("recent_category"))

    return TenantModelIndex.build(
        tenant_id,
        model_version if model_version is not None else str(manifest.get("version") or src.name),
        sub_catalog,
        items,
        user_embeddings=users,
        user_ids=user_ids,
        popularity=popularity,
        index_policy=index_policy,
        index=index,
        fold_in=fold_in,
        filter_policy=filter_policy,
        catalog_tag=catalog_tag,
        recent_category=recent_category,
    )
