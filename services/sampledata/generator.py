"""A synthetic tech-gadget store whose behaviour a good recommender can learn.

Structure, so that a collaborative model clearly beats popularity:

* items belong to categories of uneven size and carry a hidden style vector
  (dimension 8); popularity follows a Zipf-like law (a few hits, a long tail);
* each user likes 1-3 categories (Dirichlet weights) and has a style vector; within a
  category they choose among the items that fit their style best (a softmax over
  ``style · item style`` plus popularity, kept to their top 40 items per category), so
  users with similar tastes see similar items;
* every user has at least ``min_per_user`` interactions (3 by default: enough to hold
  one out and still learn from the rest); the rest is spread by log-normal activity
  (heavy and light users);
* interactions come in sessions of one category: a run of views, with clicks,
  add-to-carts and purchases on items seen in the session following the funnel
  (roughly 70 % views, 18 % clicks, 7 % carts, 4 % purchases, 1 % ratings), at
  evening-heavy hours over the last 90 days, a few seconds to minutes apart.

Everything is drawn in vectorised numpy (the default 100K interactions take well under
a second); the same seed gives the same files. The hidden parameters come back with the
data (``SampleData.latent``) so that what the data allows a recommender can be measured
(``services.sampledata.ceiling``).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import numpy.typing as npt

__all__ = ["CATEGORIES", "Latent", "SampleData", "generate", "write_csv"]

#: Category → (price range in the store's currency, example product words).
CATEGORIES: dict[str, tuple[tuple[float, float], tuple[str, ...]]] = {
    "smartphones": ((199, 1399), ("Phone", "Galaxy", "Pixel", "Nova")),
    "laptops": ((399, 2999), ("Book", "Notebook", "Ultra", "Pro")),
    "headphones": ((19, 549), ("Buds", "Studio", "Over-Ear", "ANC")),
    "tablets": ((129, 1299), ("Tab", "Pad", "Slate")),
    "smartwatches": ((49, 899), ("Watch", "Band", "Fit")),
    "cameras": ((149, 3999), ("Cam", "Mirrorless", "Action")),
    "gaming": ((29, 699), ("Console", "Controller", "Headset")),
    "accessories": ((5, 149), ("Cable", "Charger", "Case", "Stand")),
    "speakers": ((25, 799), ("Speaker", "Soundbar", "Boom")),
    "monitors": ((99, 1999), ("Monitor", "Display", "Curved")),
}
BRANDS = ("Acme", "Nimbus", "Voltix", "Orion", "Zenith", "Kite", "Lumen", "Vertex")
TYPES = ("view", "click", "add_to_cart", "purchase", "rating")
_FUNNEL = np.array([0.70, 0.18, 0.07, 0.04, 0.01])
_DIM = 8
#: Items a user considers per liked category: their taste, not the whole shelf.
_CONSIDERED = 40
_DAYS = 90

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]


def _choice_logits(
    styles: FloatArray, item_style: FloatArray, popularity: FloatArray
) -> FloatArray:
    """``(len(styles), len(item_style))`` logits of choosing each item (one category)."""
    logits: FloatArray = 2.0 * (styles @ item_style.T) / np.sqrt(_DIM)
    logits += popularity[None, :] * 0.5
    return logits


def _considered(logits: FloatArray) -> tuple[IntArray, FloatArray]:
    """Per row, the ``_CONSIDERED`` best columns and their softmax choice weights."""
    k = min(_CONSIDERED, logits.shape[1])
    top = np.argpartition(-logits, k - 1, axis=1)[:, :k]
    top_logits = np.take_along_axis(logits, top, axis=1)
    weights = np.exp(top_logits - top_logits.max(axis=1, keepdims=True))
    weights /= weights.sum(axis=1, keepdims=True)
    return top, weights


@dataclass(frozen=True)
class Latent:
    """The hidden parameters the interactions were drawn from (indices: ``item_<i>``,
    ``user_<u>``)."""

    item_category: IntArray  # index into CATEGORIES
    item_style: FloatArray  # (items, 8)
    popularity: FloatArray  # (items,) the log-popularity term of the choice logits
    taste: FloatArray  # (users, categories), rows sum to 1
    user_style: FloatArray  # (users, 8)

    def choice_probabilities(self, styles: FloatArray) -> npt.NDArray[np.float32]:
        """``(len(styles), items)``: for a user of each style, the probability of each
        item when a session is in that item's category (each category's row part sums
        to 1; zero outside the style's ``_CONSIDERED`` best items of the category)."""
        out = np.zeros((len(styles), len(self.item_category)), np.float32)
        for c in range(len(CATEGORIES)):
            pool = np.flatnonzero(self.item_category == c)
            if len(pool) == 0:
                continue
            logits = _choice_logits(styles, self.item_style[pool], self.popularity[pool])
            top, weights = _considered(logits)
            block = np.zeros((len(styles), len(pool)), np.float32)
            np.put_along_axis(block, top, weights.astype(np.float32), axis=1)
            out[:, pool] = block
        return out


@dataclass
class SampleData:
    items: list[dict[str, str]]
    #: (user_id, item_id, interaction_type, timestamp ISO 8601, value), by time.
    interactions: list[tuple[str, str, str, str, str]]
    latent: Latent | None = None

    @property
    def user_count(self) -> int:
        return len({row[0] for row in self.interactions})


def _catalog(rng: np.random.Generator, items: int, item_cat: IntArray) -> list[dict[str, str]]:
    names = list(CATEGORIES)
    low = np.array([CATEGORIES[names[c]][0][0] for c in item_cat])
    high = np.array([CATEGORIES[names[c]][0][1] for c in item_cat])
    prices = np.exp(rng.uniform(np.log(low), np.log(high)))
    brands = rng.integers(0, len(BRANDS), items)
    words = rng.integers(0, 12, items)
    catalog = []
    for i in range(items):
        category = names[item_cat[i]]
        vocabulary = CATEGORIES[category][1]
        brand = BRANDS[brands[i]]
        catalog.append(
            {
                "item_id": f"item_{i}",
                "title": f"{brand} {vocabulary[words[i] % len(vocabulary)]} {100 + i}",
                "category": category,
                "price": f"{prices[i]:.2f}",
                "image_url": f"https://images.example.com/items/item_{i}.jpg",
                "brand": brand,
            }
        )
    return catalog


def generate(
    *,
    users: int = 10_000,
    items: int = 5_000,
    interactions: int = 100_000,
    seed: int = 42,
    now: datetime | None = None,
    min_per_user: int = 3,
) -> SampleData:
    """The store's catalog and ``interactions`` interactions of ``users`` users."""
    if min(users, items, interactions) <= 0:
        raise ValueError("users, items and interactions must be positive")
    rng = np.random.default_rng(seed)
    now = (now or datetime.now(UTC)).replace(microsecond=0)
    n_cat = len(CATEGORIES)

    # Catalog: uneven category sizes, hidden styles, Zipf-like popularity.
    cat_share = rng.dirichlet(np.full(n_cat, 4.0))
    item_cat = rng.choice(n_cat, size=items, p=cat_share)
    item_style = rng.normal(size=(items, _DIM))
    popularity = -1.1 * np.log(rng.permutation(items) + 1.0)
    catalog = _catalog(rng, items, item_cat)

    # Users: 1-3 liked categories with Dirichlet weights, a style, an activity level.
    taste = np.zeros((users, n_cat))
    liked_count = rng.integers(1, 4, users)
    order = np.argsort(rng.random((users, n_cat)), axis=1)
    for k in range(1, 4):
        rows = np.flatnonzero(liked_count == k)
        block = np.zeros((len(rows), n_cat))
        weights = rng.dirichlet(np.ones(k), size=len(rows))
        np.put_along_axis(block, order[rows, :k], weights, axis=1)
        taste[rows] = block
    user_style = rng.normal(size=(users, _DIM))

    # Per (user, category): the user's considered items and their choice probabilities.
    considered = np.zeros((users, n_cat, _CONSIDERED), dtype=np.int64)
    cumulative = np.ones((users, n_cat, _CONSIDERED))
    for c in range(n_cat):
        pool = np.flatnonzero(item_cat == c)
        if len(pool) == 0:
            taste[:, c] = 0.0
            continue
        fans = np.flatnonzero(taste[:, c] > 0)
        if len(fans) == 0:
            continue
        logits = _choice_logits(user_style[fans], item_style[pool], popularity[pool])
        top, weights = _considered(logits)
        k = top.shape[1]
        considered[fans, c, :k] = pool[top]
        considered[fans, c, k:] = pool[top[:, :1]]
        cumulative[fans, c, :k] = np.cumsum(weights, axis=1)
    # A user whose only liked category happens to be empty (tiny catalogs) takes the
    # largest one instead.
    taste[taste.sum(axis=1) == 0, int(np.bincount(item_cat, minlength=n_cat).argmax())] = 1.0
    taste /= taste.sum(axis=1, keepdims=True)

    # How many interactions each user has: a floor, then log-normal activity.
    floor = min(min_per_user, interactions // users)
    activity = rng.lognormal(0.0, 1.0, users)
    per_user = floor + rng.multinomial(interactions - floor * users, activity / activity.sum())
    user_of = np.repeat(np.arange(users), per_user)

    # Sessions: runs of a user's consecutive interactions (about 5 long on average,
    # geometric), one category each.
    n = len(user_of)
    first_of_user = np.concatenate(([0], np.cumsum(per_user)[:-1]))
    starts = rng.random(n) < 0.2
    starts[first_of_user[per_user > 0]] = True
    index = np.arange(n)
    position = index - np.maximum.accumulate(np.where(starts, index, 0))
    session = np.cumsum(starts) - 1
    n_sessions = int(session[-1]) + 1 if len(session) else 0
    session_user = user_of[starts]
    cum_taste = np.cumsum(taste[session_user], axis=1)
    session_cat = (cum_taste < rng.random((n_sessions, 1))).sum(axis=1).clip(0, n_cat - 1)
    cat_of = session_cat[session]

    # Items from the user's considered set in the session's category.
    draws = rng.random(n)
    cum = cumulative[user_of, cat_of]
    choice = (cum < draws[:, None]).sum(axis=1).clip(0, _CONSIDERED - 1)
    item_of = considered[user_of, cat_of, choice]
    # Funnel: a session opens with a view; later steps act on an item seen before in
    # the session (the previous one) with the funnel's odds.
    kind = rng.choice(len(TYPES), size=len(user_of), p=_FUNNEL)
    kind[position == 0] = 0
    acted = (kind > 0) & (position > 0)
    item_of[acted] = item_of[np.flatnonzero(acted) - 1]

    # Time: a session starts on one of the last 90 days, at an evening-heavy hour;
    # events follow a few seconds to minutes apart.
    now_s = int(now.timestamp())
    day = rng.integers(0, _DAYS, n_sessions)
    hour = np.clip(rng.normal(19.0, 3.5, n_sessions), 0.0, 23.9)
    midnight = now_s - (now_s % 86400)
    session_start = midnight - day * 86400 + (hour * 3600).astype(np.int64)
    gaps = rng.exponential(90.0, len(user_of)).astype(np.int64) + 1
    gaps[starts] = 0
    offset = np.cumsum(gaps)
    offset -= np.repeat(offset[starts], np.bincount(session, minlength=n_sessions))
    ts = np.minimum(session_start[session] + offset, now_s - 1)

    values = np.full(len(user_of), "", dtype=object)
    purchases = kind == 3
    values[purchases] = rng.integers(1, 3, int(purchases.sum())).astype(str)
    ratings = kind == 4
    values[ratings] = (
        np.clip(np.rint(rng.normal(4.0, 1.0, int(ratings.sum()))), 1, 5).astype(int).astype(str)
    )

    by_time = np.argsort(ts, kind="stable")
    stamps = np.array(ts[by_time], dtype="datetime64[s]").astype(str)
    table = [
        (f"user_{u}", f"item_{i}", TYPES[k], f"{s}Z", v)
        for u, i, k, s, v in zip(
            user_of[by_time].tolist(),
            item_of[by_time].tolist(),
            kind[by_time].tolist(),
            stamps.tolist(),
            values[by_time].tolist(),
            strict=True,
        )
    ]
    latent = Latent(item_cat.astype(np.int64), item_style, popularity, taste, user_style)
    return SampleData(items=catalog, interactions=table, latent=latent)


def write_csv(data: SampleData, out: Path) -> tuple[Path, Path]:
    """Write items.csv and interactions.csv (the seed's columns) into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    items_path, interactions_path = out / "items.csv", out / "interactions.csv"
    with items_path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(
            f, ["item_id", "title", "category", "price", "image_url", "brand"], lineterminator="\n"
        )
        writer.writeheader()
        writer.writerows(data.items)
    with interactions_path.open("w", newline="", encoding="utf-8") as f:
        writer2 = csv.writer(f, lineterminator="\n")
        writer2.writerow(["user_id", "item_id", "interaction_type", "timestamp", "value"])
        writer2.writerows(data.interactions)
    return items_path, interactions_path
