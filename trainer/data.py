"""Interaction data for LightGCN: id maps, splits, graph, negative sampling.

Why this module exists: the trainer, evaluator and artifact writer all need the same
contiguous index space (external string ids ↔ ints), the same train/validation/test
split, the normalised user-item graph and a fast sampler. Two sources feed it: the
public Gowalla split (``user item item ...`` lines, gzip or plain) used as the quality
benchmark, and tenant event logs ``(user_id, item_id, timestamp)`` which are split per
user by time (the last share of each user's history is held out), so evaluation mimics
"predict what they do next".

Everything here is vectorised numpy: sampling rejects positives with one
``searchsorted`` over sorted ``user * n_items + item`` keys per round, never a Python
loop per sample.
"""

from __future__ import annotations

import gzip
import hashlib
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt
import torch

__all__ = ["InteractionData", "NegativeSampler", "Split", "sparse_csr"]

IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True)
class Split:
    """A set of (user, item) index pairs (with their latest event time, for tenant data)."""

    users: IntArray
    items: IntArray
    times: npt.NDArray[np.float64] | None = None

    def __len__(self) -> int:
        return int(self.users.shape[0])

    @staticmethod
    def empty() -> Split:
        return Split(np.zeros(0, np.int64), np.zeros(0, np.int64))


def _csr(users: IntArray, items: IntArray, n_rows: int) -> tuple[IntArray, IntArray]:
    """Row pointer and sorted column indices of the (user x item) 0/1 matrix."""
    order = np.lexsort((items, users))
    counts = np.bincount(users, minlength=n_rows)
    indptr = np.zeros(n_rows + 1, np.int64)
    np.cumsum(counts, out=indptr[1:])
    return indptr, items[order].astype(np.int64)


@dataclass
class InteractionData:
    """Contiguous index maps plus train / validation / test splits."""

    user_ids: list[str]
    item_ids: list[str]
    train: Split
    test: Split
    valid: Split = field(default_factory=Split.empty)
    #: Category per item index ("" = none), when the catalog was given.
    item_categories: list[str] | None = None

    def __post_init__(self) -> None:
        self.user_index: dict[str, int] = {u: i for i, u in enumerate(self.user_ids)}
        self.item_index: dict[str, int] = {v: i for i, v in enumerate(self.item_ids)}

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    # ------------------------------------------------------------------ loading
    @classmethod
    def from_gowalla(
        cls,
        train_path: str | Path,
        test_path: str | Path,
        *,
        val_fraction: float = 0.0,
        seed: int = 0,
    ) -> InteractionData:
        """Load the LightGCN/NGCF text format (``user item item ...``; ``.gz`` allowed).

        Ids in these files are already 0-based and contiguous; the maps keep that order
        (external id ``"17"`` ↔ index 17). ``val_fraction`` moves a random share of each
        user's train items to a validation split (users keep at least one train item).
        """
        tr_u, tr_i = _read_lines(Path(train_path))
        te_u, te_i = _read_lines(Path(test_path))
        n_users = int(max(tr_u.max(initial=-1), te_u.max(initial=-1))) + 1
        n_items = int(max(tr_i.max(initial=-1), te_i.max(initial=-1))) + 1
        train, valid = Split(tr_u, tr_i), Split.empty()
        if val_fraction > 0:
            rng = np.random.default_rng(seed)
            key = rng.random(len(tr_u))
            held = _hold_out(tr_u, tr_i, key, val_fraction)
            train, valid = (Split(part.users, part.items) for part in held)  # no real times
        return cls(
            user_ids=[str(i) for i in range(n_users)],
            item_ids=[str(i) for i in range(n_items)],
            train=train,
            test=Split(te_u, te_i),
            valid=valid,
        )

    @classmethod
    def from_interactions(
        cls,
        users: Sequence[str] | npt.NDArray[np.generic],
        items: Sequence[str] | npt.NDArray[np.generic],
        timestamps: Sequence[float] | npt.NDArray[np.generic],
        *,
        test_fraction: float = 0.2,
        val_fraction: float = 0.0,
        item_categories: Mapping[str, str | None] | None = None,
    ) -> InteractionData:
        """Build from tenant events with a per-user time-based split.

        ``item_categories`` (item id -> category, from the catalog) is kept per item
        index for the recent-category boost; items missing from it have none.

        Repeated (user, item) pairs keep their latest timestamp. For each user the
        latest ``test_fraction`` of interactions (rounded, at most n-1) go to test,
        the ``val_fraction`` before them to validation, the rest to train. Index maps
        are sorted by external id so the same data always gives the same indices.
        """
        u_ext = np.asarray(users).astype(str)
        i_ext = np.asarray(items).astype(str)
        ts = np.asarray(timestamps, dtype=np.float64)
        if not (len(u_ext) == len(i_ext) == len(ts)):
            raise ValueError("users, items and timestamps must have the same length")
        user_ids, u = np.unique(u_ext, return_inverse=True)
        item_ids, i = np.unique(i_ext, return_inverse=True)
        u, i = u.astype(np.int64), i.astype(np.int64)
        # Deduplicate pairs, keeping the latest event of each.
        order = np.lexsort((-ts, i, u))
        u, i, ts = u[order], i[order], ts[order]
        first = np.ones(len(u), bool)
        first[1:] = (u[1:] != u[:-1]) | (i[1:] != i[:-1])
        u, i, ts = u[first], i[first], ts[first]
        train, test = _hold_out(u, i, ts, test_fraction)
        valid = Split.empty()
        if val_fraction > 0:
            assert train.times is not None
            train, valid = _hold_out(train.users, train.items, train.times, val_fraction)
        categories = None
        if item_categories is not None:
            categories = [item_categories.get(str(x)) or "" for x in item_ids]
        return cls(
            user_ids=[str(x) for x in user_ids],
            item_ids=[str(x) for x in item_ids],
            train=train,
            test=test,
            valid=valid,
            item_categories=categories,
        )

    # ------------------------------------------------------------------ derived
    def with_valid_in_train(self) -> InteractionData:
        """The same id maps and test split, with the validation pairs moved into train."""
        times = None
        if self.train.times is not None and self.valid.times is not None:
            times = np.concatenate([self.train.times, self.valid.times])
        train = Split(
            np.concatenate([self.train.users, self.valid.users]),
            np.concatenate([self.train.items, self.valid.items]),
            times,
        )
        return InteractionData(
            self.user_ids, self.item_ids, train, self.test, item_categories=self.item_categories
        )

    def category_codes(self) -> tuple[IntArray, int]:
        """(category code per item, -1 for none; number of categories)."""
        if self.item_categories is None:
            return np.full(self.n_items, -1, np.int64), 0
        names = sorted({c for c in self.item_categories if c})
        code = {c: k for k, c in enumerate(names)}
        return np.array([code.get(c, -1) for c in self.item_categories], np.int64), len(names)

    def train_csr(self) -> tuple[IntArray, IntArray]:
        """(indptr, indices) of the train user x item matrix, columns sorted."""
        return _csr(self.train.users, self.train.items, self.n_users)

    def split_csr(self, name: str) -> tuple[IntArray, IntArray]:
        """(indptr, indices) of the ``"train"``, ``"valid"`` or ``"test"`` split."""
        s: Split = getattr(self, name)
        return _csr(s.users, s.items, self.n_users)

    def item_popularity(self) -> IntArray:
        """Train interaction count per item."""
        return np.bincount(self.train.items, minlength=self.n_items).astype(np.int64)

    def data_hash(self) -> str:
        """sha256 over the id maps and every split: identifies the training data."""
        h = hashlib.sha256()
        for ids in (self.user_ids, self.item_ids):
            h.update("\x1f".join(ids).encode())
            h.update(b"\x1e")
        for s in (self.train, self.valid, self.test):
            order = np.lexsort((s.items, s.users))
            h.update(np.ascontiguousarray(s.users[order]).tobytes())
            h.update(np.ascontiguousarray(s.items[order]).tobytes())
            h.update(b"\x1e")
        return h.hexdigest()

    def adjacency(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """Symmetric-normalised D^-1/2 A D^-1/2 of the user-item graph, sparse CSR.

        Nodes are users ``0..U-1`` then items ``U..U+I-1``; A has a 1 for every train
        pair in both directions. CSR because sparse x dense products are ~5x faster
        than COO on CPU (docs/trainer.md).
        """
        n_u, n = self.n_users, self.n_users + self.n_items
        u, i = self.train.users, self.train.items + n_u
        rows = np.concatenate([u, i])
        cols = np.concatenate([i, u])
        deg = np.bincount(rows, minlength=n).astype(np.float64)
        inv_sqrt = np.zeros(n, np.float64)
        nz = deg > 0
        inv_sqrt[nz] = deg[nz] ** -0.5
        vals = inv_sqrt[rows] * inv_sqrt[cols]
        order = np.lexsort((cols, rows))
        indptr = np.zeros(n + 1, np.int64)
        np.cumsum(np.bincount(rows, minlength=n), out=indptr[1:])
        return sparse_csr(
            torch.from_numpy(indptr),
            torch.from_numpy(cols[order].astype(np.int64)),
            torch.from_numpy(vals[order]).to(dtype),
            (n, n),
        )


def sparse_csr(
    crow: torch.Tensor, col: torch.Tensor, values: torch.Tensor, size: tuple[int, int]
) -> torch.Tensor:
    """``torch.sparse_csr_tensor`` without invariant checks and its "beta" warning
    (the inputs are built correct by construction here)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        return torch.sparse_csr_tensor(crow, col, values, size=size, check_invariants=False)


class NegativeSampler:
    """Uniform item sampler that rejects each user's train items, vectorised."""

    def __init__(self, users: IntArray, items: IntArray, n_items: int, max_rounds: int = 50):
        self.n_items = n_items
        self.max_rounds = max_rounds
        self._keys = np.unique(users.astype(np.int64) * n_items + items.astype(np.int64))

    def is_positive(self, users: IntArray, items: IntArray) -> npt.NDArray[np.bool_]:
        keys = users * self.n_items + items
        pos = np.searchsorted(self._keys, keys)
        pos = np.minimum(pos, len(self._keys) - 1)
        if len(self._keys) == 0:
            return np.zeros(keys.shape, bool)
        return np.asarray(self._keys[pos] == keys)

    def sample(self, users: IntArray, n_neg: int, rng: np.random.Generator) -> IntArray:
        """Return ``(len(users), n_neg)`` items the user has not in train.

        Rejection rounds are vectorised; after ``max_rounds`` the few leftovers (users
        with nearly every item) are drawn from their complement; a user with every
        item gets arbitrary items."""
        u = np.repeat(users.astype(np.int64), n_neg)
        neg = rng.integers(0, self.n_items, size=u.shape[0], dtype=np.int64)
        bad = np.flatnonzero(self.is_positive(u, neg))
        for _ in range(self.max_rounds):
            if bad.size == 0:
                break
            neg[bad] = rng.integers(0, self.n_items, size=bad.size, dtype=np.int64)
            bad = bad[self.is_positive(u[bad], neg[bad])]
        # Leftovers belong to users with nearly every item: draw from their complement.
        for k in bad:
            lo, hi = np.searchsorted(self._keys, [u[k] * self.n_items, (u[k] + 1) * self.n_items])
            free = np.setdiff1d(np.arange(self.n_items), self._keys[lo:hi] - u[k] * self.n_items)
            if free.size:
                neg[k] = free[rng.integers(free.size)]
        return neg.reshape(len(users), n_neg)


def sample_same_category(
    sampler: NegativeSampler,
    users: IntArray,
    positives: IntArray,
    item_category: IntArray,
    n_neg: int,
    rng: np.random.Generator,
) -> IntArray:
    """``(len(users), n_neg)`` items of each positive's category (code -1: the items
    without one) that the user has not in train, uniform within it; after a few
    rejection rounds the leftovers (a category the user nearly has entirely) are
    uniform over all items."""
    codes = np.where(item_category >= 0, item_category, item_category.max(initial=0) + 1)
    order = np.argsort(codes, kind="stable").astype(np.int64)
    sizes = np.bincount(codes)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
    u = np.repeat(users.astype(np.int64), n_neg)
    c = np.repeat(codes[positives], n_neg)

    def draw(k: IntArray) -> IntArray:
        picked: IntArray = order[starts[c[k]] + rng.integers(0, sizes[c[k]])]
        return picked

    neg = draw(np.arange(len(u), dtype=np.int64))
    bad = np.flatnonzero(sampler.is_positive(u, neg))
    for _ in range(10):
        if bad.size == 0:
            break
        neg[bad] = draw(bad)
        bad = bad[sampler.is_positive(u[bad], neg[bad])]
    if bad.size:
        neg[bad] = sampler.sample(u[bad], 1, rng)[:, 0]
    return neg.reshape(len(users), n_neg)


# ---------------------------------------------------------------------- helpers
def _read_lines(path: Path) -> tuple[IntArray, IntArray]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt") as fh:
        text = fh.read()
    users: list[IntArray] = []
    items: list[IntArray] = []
    for line in text.splitlines():
        parts = np.array(line.split(), dtype=np.int64)
        if parts.size < 2:
            continue
        users.append(np.full(parts.size - 1, parts[0], np.int64))
        items.append(parts[1:])
    if not users:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(users), np.concatenate(items)


def _hold_out(
    u: IntArray, i: IntArray, key: npt.NDArray[np.floating], fraction: float
) -> tuple[Split, Split]:
    """Per user, move the ``fraction`` of pairs with the largest ``key`` out of train
    (rounded, keeping at least one pair in train)."""
    order = np.lexsort((key, u))
    u, i = u[order], i[order]
    counts = np.bincount(u)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    rank = np.arange(len(u)) - starts[u]  # 0 = oldest
    n = counts[u]
    n_hold = np.minimum(np.rint(n * fraction).astype(np.int64), n - 1)
    held = rank >= n - n_hold
    k = np.asarray(key, np.float64)[order]
    return Split(u[~held], i[~held], k[~held]), Split(u[held], i[held], k[held])
