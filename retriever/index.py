"""Sharded inner-product index over item embeddings.

Why this shape:

* Small catalogs get an exact ``IndexFlatIP``: at a few hundred thousand items a
  brute-force scan is a few milliseconds and needs no tuning. Above a configurable
  threshold (``IndexPolicy.flat_max_items``, default 200k) an approximate index is
  built: IVF-Flat (nlist = 4·sqrt(n), nprobe 16) by default, HNSW
  (``IndexHNSWFlat``, METRIC_INNER_PRODUCT) as the alternative. On clustered 1M×64
  embeddings IVF reached the same recall as HNSW at lower latency and an 8× shorter
  build (118 s vs 982 s, 2 busy cores); see docs/retriever.md.
* Every parameter that shaped the index lives in an ``IndexSpec`` that is saved next
  to the index, so a loaded index says what it is and can be re-tuned
  (``efSearch`` / ``nprobe``) without a rebuild.
* Shards hold successive ranges of item positions. We merge shard results ourselves
  (rather than ``faiss.IndexShards``) because (a) per-shard search parameters, such as
  an ID selector, must be translated to shard-local ids, which IndexShards cannot do,
  and (b) the merge then uses one deterministic order, score descending and position
  ascending, so a sharded exact index returns exactly what the unsharded one returns.
* On a GPU host (faiss-gpu installed and ``faiss.get_num_gpus() > 0``) each shard of a
  flat or IVF index is moved to its own GPU and shards are searched from a thread pool
  (faiss releases the GIL). HNSW has no GPU implementation and stays on the CPU. The
  module imports and works with faiss-cpu alone.
* ``faiss.cvar.distance_compute_blas_threshold`` is lowered to 20 queries: faiss
  1.15's default (128000) keeps batch search off BLAS, which made a batch of 256
  queries over 1M items 8× slower here (3.0 s → 0.36 s).

Ids returned by this module are *positions* (row numbers in the embedding matrix);
mapping to external item ids is the engine's job.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import faiss
import numpy as np
import numpy.typing as npt

__all__ = [
    "BLAS_THRESHOLD",
    "MISSING_ID",
    "IndexKind",
    "IndexPolicy",
    "IndexSpec",
    "ShardedIndex",
    "configure_faiss",
]

logger = logging.getLogger(__name__)

# faiss's SWIG surface is only partly typed; go through an Any alias where it is not.
_faiss: Any = faiss

IndexKind = Literal["flat", "hnsw", "ivf"]
FloatArray = npt.NDArray[np.float32]
IdArray = npt.NDArray[np.int64]

#: Batches of at least this many queries use BLAS (sgemm) for flat distance computation.
BLAS_THRESHOLD = 20
#: Label of an empty result slot (fewer than k candidates).
MISSING_ID = -1
_SPEC_FILE = "index_spec.json"
_VECTORS_FILE = "vectors.npy"


def configure_faiss(threads: int | None = None) -> None:
    """Apply process-wide faiss settings (idempotent).

    ``threads`` sets faiss's OpenMP thread count. On a small shared host prefer 1 per
    serving process and scale with processes: with 2 threads and the second core busy,
    OpenMP barriers made a 256-query flat batch over 200k items 10× slower here
    (2.3 s vs 0.24 s on one thread).

    Numpy's OpenBLAS has its own pool: set ``OPENBLAS_NUM_THREADS=1`` in the serving
    environment too (exact subset scoring of 10k×64 took 8.3 ms with OpenBLAS's
    default threads on the busy machine, 0.3 ms with one).
    """
    faiss.cvar.distance_compute_blas_threshold = BLAS_THRESHOLD
    if threads is not None:
        faiss.omp_set_num_threads(threads)


@dataclass(frozen=True)
class IndexSpec:
    """Everything that determines an index; saved as JSON beside the shards."""

    kind: IndexKind
    dim: int
    n_items: int
    n_shards: int = 1
    hnsw_m: int = 32
    hnsw_ef_construction: int = 40
    hnsw_ef_search: int = 64
    ivf_nlist: int = 1024
    ivf_nprobe: int = 16
    ivf_train_size: int = 200_000

    def __post_init__(self) -> None:
        if self.kind not in ("flat", "hnsw", "ivf"):
            raise ValueError(f"unknown index kind {self.kind!r}")
        if self.dim <= 0 or self.n_items < 0 or self.n_shards <= 0:
            raise ValueError(f"invalid index spec {self}")

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> IndexSpec:
        raw: dict[str, Any] = json.loads(text)
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in raw.items() if k in known})


@dataclass(frozen=True)
class IndexPolicy:
    """How to choose an ``IndexSpec`` from the catalog size.

    ``n_shards=None`` means one shard per GPU on a GPU host, else one shard.
    ``ivf_nlist=None`` means ``4·sqrt(n)`` rounded to a multiple of 64.
    """

    flat_max_items: int = 200_000
    # IVF by default: on clustered 1M×64 embeddings it reached recall@10 0.97 at
    # nprobe 16 (p50 0.43 ms) after a 118 s build; HNSW M=32 needed efConstruction 100
    # (982 s build) and efSearch 256 (p50 1.4 ms) for the same recall. See
    # docs/retriever.md.
    ann_kind: Literal["hnsw", "ivf"] = "ivf"
    n_shards: int | None = None
    hnsw_m: int = 32
    hnsw_ef_construction: int = 40
    hnsw_ef_search: int = 64
    ivf_nlist: int | None = None
    ivf_nprobe: int = 16

    def spec_for(self, n_items: int, dim: int) -> IndexSpec:
        n_gpus = _num_gpus()
        n_shards = self.n_shards if self.n_shards is not None else max(1, n_gpus)
        n_shards = max(1, min(n_shards, max(1, n_items)))
        if n_items <= self.flat_max_items:
            return IndexSpec(kind="flat", dim=dim, n_items=n_items, n_shards=n_shards)
        nlist = self.ivf_nlist
        if nlist is None:
            nlist = max(64, round(4 * math.sqrt(n_items) / 64) * 64)
        return IndexSpec(
            kind=self.ann_kind,
            dim=dim,
            n_items=n_items,
            n_shards=n_shards,
            hnsw_m=self.hnsw_m,
            hnsw_ef_construction=self.hnsw_ef_construction,
            hnsw_ef_search=self.hnsw_ef_search,
            ivf_nlist=nlist,
            ivf_nprobe=self.ivf_nprobe,
        )


def _num_gpus() -> int:
    try:
        return int(faiss.get_num_gpus())
    except AttributeError:  # pragma: no cover - very old faiss builds
        return 0


def as_query_matrix(queries: npt.ArrayLike, dim: int) -> FloatArray:
    """Return queries as a C-contiguous float32 (nq, dim) matrix."""
    q = np.ascontiguousarray(np.asarray(queries, dtype=np.float32))
    if q.ndim == 1:
        q = q.reshape(1, -1)
    if q.ndim != 2 or q.shape[1] != dim:
        raise ValueError(f"queries must have shape (nq, {dim}), got {q.shape}")
    return q


def merge_topk(
    scores: Sequence[FloatArray], ids: Sequence[IdArray], k: int
) -> tuple[FloatArray, IdArray]:
    """Merge per-shard top-k lists into one, ordered by (score desc, id asc).

    Missing slots (id -1) sort last and come back as (-inf, -1).
    """
    all_s = np.concatenate(scores, axis=1).astype(np.float32, copy=False)
    all_i = np.concatenate(ids, axis=1).astype(np.int64, copy=False)
    missing = all_i < 0
    all_s = np.where(missing, -np.inf, all_s).astype(np.float32)
    # Missing ids sort after every real id among equal (-inf) scores.
    tie = np.where(missing, np.iinfo(np.int64).max, all_i)
    order = np.lexsort((tie, -all_s), axis=-1)[:, :k]
    out_s = np.take_along_axis(all_s, order, axis=1)
    out_i = np.take_along_axis(all_i, order, axis=1)
    out_i = np.where(np.isneginf(out_s), MISSING_ID, out_i)
    if out_s.shape[1] < k:  # fewer candidates than k in total
        pad = k - out_s.shape[1]
        out_s = np.pad(out_s, ((0, 0), (0, pad)), constant_values=-np.inf)
        out_i = np.pad(out_i, ((0, 0), (0, pad)), constant_values=MISSING_ID)
    return out_s.astype(np.float32), out_i.astype(np.int64)


def exact_topk(
    vectors: FloatArray, queries: FloatArray, k: int, positions: IdArray
) -> tuple[FloatArray, IdArray]:
    """Exact top-k among ``positions`` by direct scoring, ordered (score desc, id asc)."""
    nq = queries.shape[0]
    out_s = np.full((nq, k), -np.inf, dtype=np.float32)
    out_i = np.full((nq, k), MISSING_ID, dtype=np.int64)
    if positions.size == 0 or k == 0:
        return out_s, out_i
    pos = positions.astype(np.int64, copy=False)
    if pos.size > 1 and not bool(np.all(pos[1:] > pos[:-1])):
        pos = np.unique(pos)  # sorted rows gather faster and give a stable tie order
    sub = vectors[pos]
    # (m, d) @ (d, nq): a gemv for one query; ``queries @ sub.T`` took a gemm path
    # 5× slower here (0.31 vs 0.06 ms for 10k×64).
    sc = np.ascontiguousarray((sub @ queries.T).T, dtype=np.float32)  # (nq, m)
    kk = min(k, pos.size)
    if kk < pos.size:
        part = np.argpartition(-sc, kk - 1, axis=1)[:, :kk]
    else:
        part = np.broadcast_to(np.arange(pos.size), (nq, pos.size))
    cand_s = np.take_along_axis(sc, part, axis=1)
    cand_i = pos[part]
    # Boundary ties: argpartition picks arbitrarily among equal scores at the cut;
    # acceptable (both choices are a correct top-k), ordering inside is deterministic.
    order = np.lexsort((cand_i, -cand_s), axis=-1)
    out_s[:, :kk] = np.take_along_axis(cand_s, order, axis=1)
    out_i[:, :kk] = np.take_along_axis(cand_i, order, axis=1)
    return out_s, out_i


class ShardedIndex:
    """Inner-product index split into shards of successive positions.

    Build with :meth:`build`; search with :meth:`search`. The embedding matrix is
    kept by reference (not copied) for exact subset scoring.
    """

    def __init__(
        self,
        spec: IndexSpec,
        vectors: FloatArray,
        cpu_shards: list[Any],
        *,
        use_gpu: bool | None = None,
    ) -> None:
        configure_faiss()
        if len(cpu_shards) != spec.n_shards:
            raise ValueError("shard count does not match the spec")
        self._spec = spec
        self._vectors = vectors
        self._cpu_shards = cpu_shards
        bounds = np.linspace(0, spec.n_items, spec.n_shards + 1).round().astype(np.int64)
        self._offsets: list[int] = [int(b) for b in bounds]
        self._search_shards: list[Any] = list(cpu_shards)
        self._gpu_resources: list[Any] = []
        self._pool: ThreadPoolExecutor | None = None
        want_gpu = (_num_gpus() > 0) if use_gpu is None else use_gpu
        if want_gpu and _num_gpus() > 0 and spec.kind != "hnsw":
            self._move_to_gpus()
        self._apply_search_params()

    # ----------------------------------------------------------------- build
    @classmethod
    def build(
        cls,
        vectors: npt.ArrayLike,
        spec: IndexSpec | None = None,
        *,
        policy: IndexPolicy | None = None,
        use_gpu: bool | None = None,
        seed: int = 0,
    ) -> ShardedIndex:
        """Build an index over ``vectors`` (n×d float32; converted if needed)."""
        configure_faiss()
        x = np.ascontiguousarray(np.asarray(vectors, dtype=np.float32))
        if x.ndim != 2:
            raise ValueError(f"vectors must be 2-D, got shape {x.shape}")
        n, d = x.shape
        if spec is None:
            spec = (policy or IndexPolicy()).spec_for(n, d)
        if spec.n_items != n or spec.dim != d:
            raise ValueError(f"spec {spec} does not match vectors of shape {x.shape}")
        bounds = np.linspace(0, n, spec.n_shards + 1).round().astype(np.int64)
        template: Any = None
        if spec.kind == "ivf":
            template = _trained_ivf(x, spec, seed)
        shards: list[Any] = []
        for s in range(spec.n_shards):
            part = x[bounds[s] : bounds[s + 1]]
            if spec.kind == "flat":
                idx: Any = faiss.IndexFlatIP(d)
            elif spec.kind == "hnsw":
                idx = faiss.IndexHNSWFlat(d, spec.hnsw_m, faiss.METRIC_INNER_PRODUCT)
                idx.hnsw.efConstruction = spec.hnsw_ef_construction
            else:
                idx = faiss.clone_index(template)
            if part.shape[0]:
                idx.add(part)
            shards.append(idx)
        logger.info("built %s index: %d items, %d shards", spec.kind, n, spec.n_shards)
        return cls(spec, x, shards, use_gpu=use_gpu)

    # ------------------------------------------------------------ properties
    @property
    def spec(self) -> IndexSpec:
        return self._spec

    @property
    def vectors(self) -> FloatArray:
        return self._vectors

    @property
    def ntotal(self) -> int:
        return self._spec.n_items

    @property
    def is_exact(self) -> bool:
        """True when :meth:`search` without ``allowed`` returns the exact top-k."""
        return self._spec.kind == "flat"

    @property
    def on_gpu(self) -> bool:
        return bool(self._gpu_resources)

    @property
    def nbytes(self) -> int:
        """Approximate memory held by the faiss structures (not the shared vectors)."""
        total = 0
        d = self._spec.dim
        for idx in self._cpu_shards:
            n = int(idx.ntotal)
            if self._spec.kind == "flat":
                total += n * d * 4
            elif self._spec.kind == "hnsw":
                h = _faiss.downcast_index(idx).hnsw
                total += n * d * 4 + int(h.neighbors.size()) * 4
                total += int(h.offsets.size()) * 8 + int(h.levels.size()) * 4
            else:
                total += n * (d * 4 + 8) + self._spec.ivf_nlist * d * 4
        return total

    # ----------------------------------------------------------------- tuning
    def tune(self, *, ef_search: int | None = None, nprobe: int | None = None) -> None:
        """Change search-time parameters in place; the spec records the new values."""
        spec = self._spec
        if ef_search is not None:
            spec = dataclasses.replace(spec, hnsw_ef_search=ef_search)
        if nprobe is not None:
            spec = dataclasses.replace(spec, ivf_nprobe=nprobe)
        self._spec = spec
        self._apply_search_params()

    def _apply_search_params(self) -> None:
        for idx in self._search_shards:
            if self._spec.kind == "hnsw":
                _faiss.downcast_index(idx).hnsw.efSearch = self._spec.hnsw_ef_search
            elif self._spec.kind == "ivf":
                if hasattr(idx, "nprobe"):
                    idx.nprobe = self._spec.ivf_nprobe
                else:  # pragma: no cover - GPU IVF exposes setNumProbes
                    idx.setNumProbes(self._spec.ivf_nprobe)

    def _search_params(self, sel: Any) -> Any:
        if self._spec.kind == "hnsw":
            p: Any = _faiss.SearchParametersHNSW()
            p.efSearch = self._spec.hnsw_ef_search
        elif self._spec.kind == "ivf":
            p = faiss.SearchParametersIVF()
            p.nprobe = self._spec.ivf_nprobe
        else:
            p = faiss.SearchParameters()
        p.sel = sel
        return p

    # ----------------------------------------------------------------- search
    def search(
        self, queries: npt.ArrayLike, k: int, *, allowed: npt.ArrayLike | None = None
    ) -> tuple[FloatArray, IdArray]:
        """Top-``k`` positions by inner product for each query row.

        ``allowed`` restricts results to a set of positions: either a boolean mask of
        length ``ntotal`` or an array of positions. Restricted search is exact for a
        flat index and as good as the ANN recall otherwise; on GPU shards (no ID
        selector support) it falls back to exact scoring of the allowed subset.
        Returns ``(scores, ids)``, each (nq, k); empty slots are (-inf, -1).
        """
        q = as_query_matrix(queries, self._spec.dim)
        if k <= 0:
            raise ValueError("k must be positive")
        if allowed is None:
            return self._search_all(q, k, None)
        mask = self._as_mask(allowed)
        if self.on_gpu:
            return exact_topk(self._vectors, q, k, np.flatnonzero(mask).astype(np.int64))
        return self._search_all(q, k, mask)

    def search_subset(
        self, queries: npt.ArrayLike, k: int, positions: npt.ArrayLike
    ) -> tuple[FloatArray, IdArray]:
        """Exact top-``k`` among ``positions`` by direct scoring (any index kind)."""
        q = as_query_matrix(queries, self._spec.dim)
        pos = np.unique(np.asarray(positions, dtype=np.int64))
        if pos.size and (pos[0] < 0 or pos[-1] >= self.ntotal):
            raise IndexError("position out of range")
        return exact_topk(self._vectors, q, k, pos)

    def _as_mask(self, allowed: npt.ArrayLike) -> npt.NDArray[np.bool_]:
        a = np.asarray(allowed)
        if a.dtype == np.bool_:
            if a.shape != (self.ntotal,):
                raise ValueError("boolean allowed mask must have length ntotal")
            return a
        pos = a.astype(np.int64, copy=False).ravel()
        if pos.size and (pos.min() < 0 or pos.max() >= self.ntotal):
            raise IndexError("allowed position out of range")
        mask = np.zeros(self.ntotal, dtype=np.bool_)
        mask[pos] = True
        return mask

    def _search_all(
        self, q: FloatArray, k: int, mask: npt.NDArray[np.bool_] | None
    ) -> tuple[FloatArray, IdArray]:
        jobs = [s for s in range(self._spec.n_shards) if self._shard_size(s) > 0]
        if mask is not None:
            jobs = [s for s in jobs if mask[self._offsets[s] : self._offsets[s + 1]].any()]
        if not jobs:
            return merge_topk(
                [np.empty((q.shape[0], 0), np.float32)], [np.empty((q.shape[0], 0), np.int64)], k
            )

        def one(s: int) -> tuple[FloatArray, IdArray]:
            lo, hi = self._offsets[s], self._offsets[s + 1]
            kk = min(k, hi - lo)
            idx = self._search_shards[s]
            if mask is None:
                d, i = idx.search(q, kk)
            else:
                bits = np.packbits(mask[lo:hi], bitorder="little")
                sel = faiss.IDSelectorBitmap(hi - lo, faiss.swig_ptr(bits))
                d, i = idx.search(q, kk, params=self._search_params(sel))
                del sel, bits  # kept alive until the search returned
            i = np.where(i >= 0, i + lo, MISSING_ID)
            return d, i

        if self._pool is not None and len(jobs) > 1:
            results = list(self._pool.map(one, jobs))
        else:
            results = [one(s) for s in jobs]
        return merge_topk([r[0] for r in results], [r[1] for r in results], k)

    def _shard_size(self, s: int) -> int:
        return self._offsets[s + 1] - self._offsets[s]

    # -------------------------------------------------------------------- GPU
    def _move_to_gpus(self) -> None:  # pragma: no cover - needs a CUDA device
        n_gpus = _num_gpus()
        moved: list[Any] = []
        for s, idx in enumerate(self._cpu_shards):
            res = faiss.StandardGpuResources()
            self._gpu_resources.append(res)
            moved.append(faiss.index_cpu_to_gpu(res, s % n_gpus, idx))
        self._search_shards = moved
        self._pool = ThreadPoolExecutor(max_workers=len(moved), thread_name_prefix="faiss-shard")
        logger.info("placed %d shards on %d GPUs", len(moved), n_gpus)

    # ------------------------------------------------------------ persistence
    def save(self, directory: str | Path, *, with_vectors: bool = True) -> None:
        """Write ``index_spec.json``, ``shard_<i>.faiss`` and (optionally) vectors."""
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        for s, idx in enumerate(self._cpu_shards):
            faiss.write_index(idx, str(out / f"shard_{s}.faiss"))
        if with_vectors:
            np.save(out / _VECTORS_FILE, self._vectors)
        (out / _SPEC_FILE).write_text(self._spec.to_json())

    @classmethod
    def load(
        cls,
        directory: str | Path,
        vectors: npt.ArrayLike | None = None,
        *,
        use_gpu: bool | None = None,
    ) -> ShardedIndex:
        src = Path(directory)
        spec = IndexSpec.from_json((src / _SPEC_FILE).read_text())
        if vectors is None:
            vectors = np.load(src / _VECTORS_FILE)
        x = np.ascontiguousarray(np.asarray(vectors, dtype=np.float32))
        if x.shape != (spec.n_items, spec.dim):
            raise ValueError(f"vectors {x.shape} do not match the saved spec {spec}")
        shards = [faiss.read_index(str(src / f"shard_{s}.faiss")) for s in range(spec.n_shards)]
        return cls(spec, x, shards, use_gpu=use_gpu)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False)
            self._pool = None


def _trained_ivf(x: FloatArray, spec: IndexSpec, seed: int) -> Any:
    """An empty, trained IVF-Flat (IP) index; shards clone it so they share centroids."""
    n, d = x.shape
    nlist = max(1, min(spec.ivf_nlist, n))
    quantizer: Any = faiss.IndexFlatIP(d)
    ivf = faiss.IndexIVFFlat(quantizer, d, nlist, faiss.METRIC_INNER_PRODUCT)
    ivf.own_fields = True
    quantizer.this.disown()
    rng = np.random.default_rng(seed)
    n_train = min(n, max(spec.ivf_train_size, 39 * nlist))
    sample = x if n_train >= n else x[np.sort(rng.choice(n, n_train, replace=False))]
    ivf.cp.seed = seed
    ivf.train(np.ascontiguousarray(sample))
    return ivf
