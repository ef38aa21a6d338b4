"""The fixed product catalogue (the same for every seed) and drawing products from it."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np

from recsys_assets.datagen._common import row_cdf

# A seed of its own: the same products whatever seed the data is generated with.
_CATALOGUE_SEED = 20_190_101

# (category, ((product noun, list price in USD), ...)).
_CATEGORIES: tuple[tuple[str, tuple[tuple[str, float], ...]], ...] = (
    ("Audio", (("Wireless Earbuds", 129), ("Bluetooth Speaker", 89), ("Over-Ear Headphones", 249),
               ("Soundbar", 299), ("Turntable", 199), ("Portable Radio", 49))),
    ("Televisions", (("4K Smart TV 55-inch", 649), ("OLED TV 65-inch", 1799),
                     ("LED TV 43-inch", 329), ("Streaming Stick", 49), ("TV Wall Mount", 59),
                     ("Home Theater Projector", 899))),
    ("Computers", (("Ultrabook Laptop", 1199), ("Gaming Laptop", 1599), ("Desktop Tower", 999),
                   ("27-inch Monitor", 329), ("Mechanical Keyboard", 119), ("Wireless Mouse", 39))),
    ("Phones", (("Smartphone 128GB", 799), ("Smartphone 256GB", 999), ("Phone Case", 29),
                ("Fast Charger", 35), ("Screen Protector", 15), ("Power Bank", 45))),
    ("Cameras", (("Mirrorless Camera", 1299), ("Action Camera", 399), ("Camera Lens 50mm", 449),
                 ("Tripod", 79), ("Memory Card 128GB", 29), ("Camera Bag", 69))),
    ("Kitchen", (("Espresso Machine", 499), ("Air Fryer", 129), ("Blender", 99),
                 ("Chef's Knife Set", 149), ("Toaster Oven", 119), ("Electric Kettle", 49))),
    ("Home Appliances", (("Robot Vacuum", 399), ("Air Purifier", 249), ("Dehumidifier", 229),
                         ("Steam Iron", 59), ("Space Heater", 79), ("Tower Fan", 89))),
    ("Gaming", (("Game Console", 499), ("Wireless Controller", 69), ("Gaming Headset", 129),
                ("VR Headset", 449), ("Racing Wheel", 299), ("Gaming Chair", 249))),
    ("Wearables", (("Smartwatch", 349), ("Fitness Tracker", 99), ("Smart Ring", 299),
                   ("Sport Watch Band", 39), ("GPS Running Watch", 299), ("Sleep Tracker", 129))),
    ("Smart Home", (("Smart Bulb 4-Pack", 49), ("Video Doorbell", 179), ("Smart Thermostat", 199),
                    ("Smart Plug", 19), ("Security Camera", 119), ("Smart Lock", 229))),
    ("Office", (("Ergonomic Office Chair", 399), ("Standing Desk", 549), ("Laser Printer", 229),
                ("Document Scanner", 279), ("Desk Lamp", 45), ("Paper Shredder", 89))),
    ("Outdoor", (("Camping Tent", 249), ("Sleeping Bag", 119), ("Hiking Backpack", 149),
                 ("Insulated Water Bottle", 35), ("Camping Stove", 79), ("LED Headlamp", 29))),
)  # fmt: skip
N_CATEGORIES = len(_CATEGORIES)
_BRANDS = (
    "Acme", "Apex", "Aurora", "Bolt", "Brio", "Cobalt", "Crest", "Echo", "Fathom", "Helix",
    "Ion", "Juniper", "Kestrel", "Lumen", "Meridian", "Nimbus", "Nova", "Orion", "Pinnacle",
    "Quartz", "Sierra", "Summit", "Vertex", "Zenith",
)  # fmt: skip
_VARIANTS = (("", 1.0), (" Pro", 1.4), (" Lite", 0.8), (" Max", 1.6), (" Mini", 0.7),
             (" Plus", 1.2), (" 2", 1.1))  # fmt: skip
_PRODUCTS_PER_CATEGORY = 25
_ID_ALPHABET = np.array(list("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"))


@dataclass(frozen=True)
class Product:
    """One product of the fixed catalogue."""

    product_id: str
    name: str
    category: str
    price: float


@dataclass(frozen=True)
class _Catalogue:
    products: tuple[Product, ...]
    within_cdf: np.ndarray  # (categories, products per category) popularity CDF


@cache
def _catalogue() -> _Catalogue:
    rng = np.random.default_rng(_CATALOGUE_SEED)
    products: list[Product] = []
    seen_ids: set[str] = set()
    brand_mult = rng.uniform(0.85, 1.2, len(_BRANDS))
    for category, nouns in _CATEGORIES:
        brands = rng.choice(len(_BRANDS), 3, replace=False)
        combos = [
            (n, b, v) for n in range(len(nouns)) for b in brands for v in range(len(_VARIANTS))
        ]
        for k in sorted(rng.choice(len(combos), _PRODUCTS_PER_CATEGORY, replace=False)):
            n, b, v = combos[k]
            noun, price = nouns[n]
            variant, variant_mult = _VARIANTS[v]
            product_id = "AV" + "".join(rng.choice(_ID_ALPHABET, 18))
            while product_id in seen_ids:  # pragma: no cover - 64**18 makes this moot
                product_id = "AV" + "".join(rng.choice(_ID_ALPHABET, 18))
            seen_ids.add(product_id)
            list_price = max(1.0, round(price * variant_mult * brand_mult[b])) - 0.01
            name = f"{_BRANDS[b]} {noun}{variant}"
            products.append(Product(product_id, name, category, round(list_price, 2)))
    # Global popularity skew: Zipf(1) over a random ranking inside every category.
    ranks = np.argsort(rng.random((N_CATEGORIES, _PRODUCTS_PER_CATEGORY)), axis=1)
    weights = 1.0 / (ranks + 1.0)
    within_cdf = row_cdf(weights / weights.sum(axis=1, keepdims=True))
    return _Catalogue(tuple(products), within_cdf)


def product_catalogue() -> tuple[Product, ...]:
    """The fixed product catalogue (~300 products in 12 categories), same for every seed."""
    return _catalogue().products


def _sample_rows(rng: np.random.Generator, cdf: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Draw one column per entry of ``rows`` from the categorical rows of ``cdf``."""
    n_rows, n_cols = cdf.shape
    flat = (cdf + np.arange(n_rows)[:, None]).ravel()
    cols = np.searchsorted(flat, rows + rng.random(len(rows)), side="right") - rows * n_cols
    return np.clip(cols, 0, n_cols - 1)


def sample_products(rng: np.random.Generator, pref_cdf: np.ndarray, cust: np.ndarray) -> np.ndarray:
    """Products drawn from each customer's category taste and the global popularity."""
    cat = _catalogue()
    category = _sample_rows(rng, pref_cdf, cust)
    return category * _PRODUCTS_PER_CATEGORY + _sample_rows(rng, cat.within_cdf, category)
