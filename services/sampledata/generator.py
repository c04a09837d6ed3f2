"""A synthetic tech-gadget store whose behaviour a good recommender can learn.

Structure, so that a collaborative model clearly beats popularity:

* items belong to categories and carry a hidden style vector (dimension 8); their
  popularity follows a Zipf-like law within each category;
* each user likes 1-3 categories (Dirichlet weights) and has their own style vector;
  a session picks a category by taste, then items by ``style · item style`` plus
  popularity (a softmax), so two users with similar tastes see similar items;
* a session is a run of views, with clicks, add-to-carts and purchases following the
  funnel (roughly 70 % views, 20 % clicks, 6 % carts, 4 % purchases), at realistic
  hours over the last 90 days; a few purchases get a rating.

Pure numpy and the standard library; the same seed gives the same files.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

__all__ = ["CATEGORIES", "SampleData", "generate", "write_csv"]

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
_TYPES = np.array(["view", "click", "add_to_cart", "purchase"])
_FUNNEL = np.array([0.70, 0.20, 0.06, 0.04])
_DIM = 8


@dataclass
class SampleData:
    items: list[dict[str, str]]
    interactions: list[tuple[str, str, str, str, str]]

    @property
    def user_count(self) -> int:
        return len({row[0] for row in self.interactions})


def generate(
    *,
    users: int = 10_000,
    items: int = 5_000,
    interactions: int = 100_000,
    seed: int = 42,
    now: datetime | None = None,
) -> SampleData:
    rng = np.random.default_rng(seed)
    now = (now or datetime.now(UTC)).replace(microsecond=0)
    names = list(CATEGORIES)
    n_cat = len(names)
    item_cat = rng.integers(0, n_cat, items)
    item_style = rng.normal(size=(items, _DIM))
    # Zipf-like popularity: a few hits, a long tail.
    item_pop = np.log(1.0 / (rng.permutation(items) + 1.0) ** 1.1)
    catalog: list[dict[str, str]] = []
    for i in range(items):
        category = names[item_cat[i]]
        (low, high), words = CATEGORIES[category]
        price = float(np.exp(rng.uniform(np.log(low), np.log(high))))
        brand = BRANDS[int(rng.integers(0, len(BRANDS)))]
        catalog.append(
            {
                "item_id": f"item_{i}",
                "title": f"{brand} {words[int(rng.integers(0, len(words)))]} {100 + i}",
                "category": category,
                "price": f"{price:.2f}",
                "image_url": f"https://images.example.com/items/item_{i}.jpg",
                "brand": brand,
            }
        )
    by_cat = [np.flatnonzero(item_cat == c) for c in range(n_cat)]
    user_taste = np.zeros((users, n_cat))
    for u in range(users):
        liked = rng.choice(n_cat, size=int(rng.integers(1, 4)), replace=False)
        user_taste[u, liked] = rng.dirichlet(np.ones(len(liked)))
    user_style = rng.normal(size=(users, _DIM))
    # Heavy users and light users: activity is log-normal.
    activity = rng.lognormal(0.0, 1.0, users)
    activity /= activity.sum()
    rows: list[tuple[str, str, str, str, str]] = []
    start = now - timedelta(days=90)
    while len(rows) < interactions:
        u = int(rng.choice(users, p=activity))
        c = int(rng.choice(n_cat, p=user_taste[u]))
        pool = by_cat[c]
        logits = 1.5 * (item_style[pool] @ user_style[u]) / np.sqrt(_DIM) + item_pop[pool]
        weights = np.exp(logits - logits.max())
        length = int(rng.integers(2, 9))
        chosen = rng.choice(pool, size=length, p=weights / weights.sum())
        day = start + timedelta(days=float(rng.uniform(0, 89.5)))
        # Evening-heavy hours of the day.
        hour = float(np.clip(rng.normal(19, 3.5), 0, 23.9))
        t = day.replace(hour=0, minute=0, second=0) + timedelta(hours=hour)
        for item in chosen:
            kind = str(rng.choice(_TYPES, p=_FUNNEL))
            t += timedelta(seconds=float(rng.exponential(90)))
            if t > now:
                break
            value = ""
            if kind == "purchase":
                value = str(int(rng.integers(1, 3)))
            rows.append(
                (f"user_{u}", f"item_{int(item)}", kind, t.strftime("%Y-%m-%dT%H:%M:%SZ"), value)
            )
            if kind == "purchase" and rng.random() < 0.15:
                rating = str(int(np.clip(round(3.5 + rng.normal(0, 1)), 1, 5)))
                rows.append(
                    (
                        f"user_{u}",
                        f"item_{int(item)}",
                        "rating",
                        (t + timedelta(days=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
                        if t + timedelta(days=2) < now
                        else t.strftime("%Y-%m-%dT%H:%M:%SZ"),
                        rating,
                    )
                )
            if len(rows) >= interactions:
                break
    rows.sort(key=lambda r: r[3])
    return SampleData(items=catalog, interactions=rows[:interactions])


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
