"""Retrieval core of embrec: FAISS indexes, exact filters, fold-in, popularity,
per-tenant model bundles and their registry. No grpc here: services adapt it.

Modules: ``index`` (sharded IP index), ``filters`` (catalog + exact filtering),
``foldin``, ``popularity``, ``engine`` (TenantModelIndex, artifact loader),
``registry`` (IndexRegistry), ``routing`` (traffic split), ``errors``, ``bench``.
"""

from retriever.engine import (
    FallbackReason,
    RecommendationResult,
    TenantModelIndex,
    load_from_artifacts,
)
from retriever.errors import (
    ArtifactError,
    InvalidRequestError,
    ModelNotLoadedError,
    RetrieverError,
    UnknownItemError,
)
from retriever.filters import Catalog, FilterPolicy, FilterSpec, filtered_search
from retriever.foldin import FoldIn, Interaction
from retriever.index import IndexPolicy, IndexSpec, ShardedIndex
from retriever.popularity import Popularity
from retriever.registry import IndexRegistry
from retriever.routing import choose_version

__all__ = [
    "ArtifactError",
    "Catalog",
    "FallbackReason",
    "FilterPolicy",
    "FilterSpec",
    "FoldIn",
    "IndexPolicy",
    "IndexRegistry",
    "IndexSpec",
    "Interaction",
    "InvalidRequestError",
    "ModelNotLoadedError",
    "Popularity",
    "RecommendationResult",
    "RetrieverError",
    "ShardedIndex",
    "TenantModelIndex",
    "UnknownItemError",
    "choose_version",
    "filtered_search",
    "load_from_artifacts",
]
