"""Synthetic, offline stand-in for Databricks' simulated "retail customer data".

Writes CSV files with the schema of ``/databricks-datasets/retail-org``:

* ``DIR/customers/customers.csv``: an SCD2 customer table (one current record per
  customer, ~10% of customers also have an older, closed record just before it).
* ``DIR/sales_orders/sales_orders_<YYYYMMDD>_<seed>_<part:03d>.csv``: fully quoted,
  multi-line (RFC 4180) CSV of orders, split by time into ``drops`` files.

The data carries learnable signal: customers belong to latent taste segments that
prefer a few product categories and re-buy favourite products (collaborative
filtering beats popularity), and 25-35% of customers churn during the period with a
declining order frequency beforehand, more often when their loyalty_segment and
units_purchased are low (recency/frequency features predict churn).

Randomness comes from independent streams, so that:

* the customer population depends only on ``(seed, customers)``;
* the product catalogue is fixed (independent of the seed);
* the good orders depend on ``(seed, customers, start_date, days, orders)`` and never on
  the bad-row fractions or on ``drops``;
* bad rows are *extra* rows: each is a corrupted copy of a randomly chosen good row
  (its "donor") and is written right after it. Removing every bad row therefore gives
  back exactly the file generated with all fractions at 0.

Bad-row kinds (``GenerationSummary.bad_rows``), counts relative to the good orders:

* ``blank_required``: ``customer_id``, ``order_datetime`` or ``ordered_products`` (in
  turn) is an empty quoted field ``""`` (Spark's CSV reader gives null by default).
* ``bad_json``: ``ordered_products`` is cut to half its length (never valid JSON).
* ``negative_qty``: the first product of ``ordered_products`` has ``qty`` < 0.
* ``non_numeric_qty``: the first product has ``qty`` spelled out as a JSON string
  (``"qty": "two"``).
* ``missing_pk``: ``order_number`` is ``""`` (the rest is a copy of the donor row).
* ``malformed``: the record has the wrong number of fields: alternately only the first
  5 fields, or the 8 fields plus a 9th ``"unexpected"`` one. Still properly quoted.

Good orders are numbered ``order_number_base(start_date) + i`` in time order. Except
``missing_pk`` and truncated ``malformed`` rows, bad rows get fresh numbers after the good
ones, so every non-empty order_number is unique, also across batches with different start
dates (as long as a batch has fewer than ``ORDER_NUMBER_STRIDE`` rows).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import date, datetime, timezone
from functools import cache
from pathlib import Path

import numpy as np

from recsys_assets.schemas import CUSTOMERS_COLUMNS as CUSTOMER_COLUMNS
from recsys_assets.schemas import SALES_ORDERS_COLUMNS as ORDER_COLUMNS

__all__ = [
    "BAD_FRACTION_KINDS",
    "BAD_JSON",
    "BAD_ROW_KINDS",
    "BLANKED_FIELDS",
    "BLANK_REQUIRED",
    "CUSTOMER_COLUMNS",
    "MALFORMED",
    "MISSING_PK",
    "NEGATIVE_QTY",
    "NON_NUMERIC_QTY",
    "ORDER_COLUMNS",
    "ORDER_NUMBER_EPOCH",
    "ORDER_NUMBER_STRIDE",
    "BadRowCounts",
    "GenerationSummary",
    "Product",
    "generate",
    "main",
    "order_number_base",
    "product_catalogue",
    "sales_orders_filename",
]

BLANK_REQUIRED = "blank_required"
BAD_JSON = "bad_json"
NEGATIVE_QTY = "negative_qty"
NON_NUMERIC_QTY = "non_numeric_qty"
MISSING_PK = "missing_pk"
MALFORMED = "malformed"
#: The kinds that ``bad_fraction`` is split evenly over, in this order.
BAD_FRACTION_KINDS: tuple[str, ...] = (BLANK_REQUIRED, BAD_JSON, NEGATIVE_QTY, NON_NUMERIC_QTY)
BAD_ROW_KINDS: tuple[str, ...] = (*BAD_FRACTION_KINDS, MISSING_PK, MALFORMED)
#: Fields blanked by ``blank_required`` rows, in turn.
BLANKED_FIELDS: tuple[str, ...] = ("customer_id", "order_datetime", "ordered_products")

ORDER_NUMBER_EPOCH = date(2019, 1, 1)
ORDER_NUMBER_STRIDE = 10_000_000

# Stream tags: each part of the data has its own random stream.
_CATALOGUE_SEED = 20_190_101
_CUSTOMER_STREAM = 1
_ORDER_STREAM = 2
_BAD_ROW_STREAM = 3

_N_SEGMENTS = 10
_SEGMENT_SIZE_CONCENTRATION = 10.0  # Dirichlet parameter of the segment sizes
# Category weights of a taste segment: every category, plus its favourite and its second.
_SEGMENT_PROFILE = (0.2, 4.0, 3.0)
_N_FAVOURITES = 5
_FAVOURITE_WEIGHTS = np.array([0.35, 0.25, 0.18, 0.12, 0.10])
_HISTORY_SHARE = 0.10
_BASE_RATE = 0.16  # median orders per active customer per (average) day
_MAX_QTY = 9
_MAX_CLICKS = 6
_PROMO_ORDER_SHARE = 0.18
_PRETTY_PROMO_SHARE = 0.25  # of promo rows: pretty-printed, i.e. multi-line JSON
_CHURN_FLOOR = 0.1  # rate multiplier on a churner's last active day
_CHURN_LOGIT_BASE = -1.0
# Mon..Sun and hour-of-day order intensity (normalised to mean 1 below).
_WEEKDAY_WEIGHTS = np.array([0.9, 0.85, 0.9, 0.95, 1.1, 1.2, 1.1])
_HOUR_WEIGHTS = np.array(
    [0.2, 0.1, 0.1, 0.1, 0.1, 0.2, 0.4, 0.7, 0.9, 1.0, 1.1, 1.2,
     1.3, 1.2, 1.1, 1.1, 1.2, 1.4, 1.7, 1.9, 1.8, 1.5, 1.0, 0.5]
)  # fmt: skip
_NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")

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
_BRANDS = (
    "Acme", "Apex", "Aurora", "Bolt", "Brio", "Cobalt", "Crest", "Echo", "Fathom", "Helix",
    "Ion", "Juniper", "Kestrel", "Lumen", "Meridian", "Nimbus", "Nova", "Orion", "Pinnacle",
    "Quartz", "Sierra", "Summit", "Vertex", "Zenith",
)  # fmt: skip
_VARIANTS = (("", 1.0), (" Pro", 1.4), (" Lite", 0.8), (" Max", 1.6), (" Mini", 0.7),
             (" Plus", 1.2), (" 2", 1.1))  # fmt: skip
_PRODUCTS_PER_CATEGORY = 25
_ID_ALPHABET = np.array(list("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"))
# (promo_id, promo_code, discount, minimum quantity) used in promotion_info / promo_info.
_PROMOTIONS = (
    (101, "WELCOME10", 0.1, 1), (102, "SPRING15", 0.15, 1), (103, "BUNDLE2", 0.2, 2),
    (104, "FLASH25", 0.25, 1), (105, "LOYAL5", 0.05, 1), (106, "BULK3", 0.3, 3),
)  # fmt: skip

# (city, state, postcode prefix, lon, lat)
_CITIES = (
    ("New York", "NY", "100", -74.006, 40.713), ("Los Angeles", "CA", "900", -118.244, 34.052),
    ("Chicago", "IL", "606", -87.630, 41.878), ("Houston", "TX", "770", -95.370, 29.760),
    ("Phoenix", "AZ", "850", -112.074, 33.448), ("Philadelphia", "PA", "191", -75.165, 39.953),
    ("San Antonio", "TX", "782", -98.494, 29.424), ("San Diego", "CA", "921", -117.161, 32.716),
    ("Dallas", "TX", "752", -96.797, 32.777), ("San Jose", "CA", "951", -121.886, 37.338),
    ("Austin", "TX", "787", -97.743, 30.267), ("Jacksonville", "FL", "322", -81.656, 30.332),
    ("Columbus", "OH", "432", -82.999, 39.961), ("Charlotte", "NC", "282", -80.843, 35.227),
    ("Indianapolis", "IN", "462", -86.158, 39.768), ("Seattle", "WA", "981", -122.332, 47.606),
    ("Denver", "CO", "802", -104.990, 39.739), ("Boston", "MA", "021", -71.059, 42.360),
    ("Nashville", "TN", "372", -86.782, 36.163), ("Detroit", "MI", "482", -83.046, 42.331),
    ("Portland", "OR", "972", -122.677, 45.515), ("Las Vegas", "NV", "891", -115.140, 36.170),
    ("Atlanta", "GA", "303", -84.388, 33.749), ("Miami", "FL", "331", -80.192, 25.762),
    ("Minneapolis", "MN", "554", -93.265, 44.978), ("Kansas City", "MO", "641", -94.579, 39.100),
    ("Salt Lake City", "UT", "841", -111.891, 40.761), ("Milwaukee", "WI", "532", -87.907, 43.039),
    ("Albuquerque", "NM", "871", -106.650, 35.084), ("Baltimore", "MD", "212", -76.612, 39.290),
)  # fmt: skip
_REGIONS = {
    "NY": "Northeast", "PA": "Northeast", "MA": "Northeast",
    "IL": "Midwest", "OH": "Midwest", "IN": "Midwest", "MI": "Midwest", "MN": "Midwest",
    "MO": "Midwest", "WI": "Midwest",
    "TX": "South", "FL": "South", "NC": "South", "TN": "South", "GA": "South", "MD": "South",
    "AZ": "West", "CA": "West", "WA": "West", "CO": "West", "OR": "West", "NV": "West",
    "UT": "West", "NM": "West",
}  # fmt: skip
_STREETS = (
    "Main St", "Oak Ave", "Maple Dr", "Cedar Ln", "Pine St", "Elm St", "Washington Blvd",
    "Lake Rd", "Hill St", "Park Ave", "2nd St", "Sunset Blvd", "River Rd", "Church St",
    "Highland Ave", "Franklin St", "Lincoln Way", "Jefferson Ave", "Broadway", "Willow Ct",
)  # fmt: skip
_FIRST_NAMES = (
    "JAMES", "MARY", "ROBERT", "PATRICIA", "JOHN", "JENNIFER", "MICHAEL", "LINDA", "DAVID",
    "ELIZABETH", "WILLIAM", "BARBARA", "RICHARD", "SUSAN", "JOSEPH", "JESSICA", "THOMAS",
    "SARAH", "CHARLES", "KAREN", "CHRISTOPHER", "LISA", "DANIEL", "NANCY", "MATTHEW", "BETTY",
    "ANTHONY", "MARGARET", "MARK", "SANDRA", "DONALD", "ASHLEY", "STEVEN", "KIMBERLY", "PAUL",
    "EMILY", "ANDREW", "DONNA", "JOSHUA", "MICHELLE", "KEVIN", "CAROL", "BRIAN", "AMANDA",
)  # fmt: skip
_LAST_NAMES = (
    "SMITH", "JOHNSON", "WILLIAMS", "BROWN", "JONES", "GARCIA", "MILLER", "DAVIS", "RODRIGUEZ",
    "MARTINEZ", "HERNANDEZ", "LOPEZ", "GONZALEZ", "WILSON", "ANDERSON", "THOMAS", "TAYLOR",
    "MOORE", "JACKSON", "MARTIN", "LEE", "PEREZ", "THOMPSON", "WHITE", "HARRIS", "SANCHEZ",
    "CLARK", "RAMIREZ", "LEWIS", "ROBINSON", "WALKER", "YOUNG", "ALLEN", "KING", "WRIGHT",
    "SCOTT", "TORRES", "NGUYEN", "HILL", "FLORES", "O'BRIEN", "MCCOY", "KIM", "PATEL",
)  # fmt: skip
_SCD_FROM_RANGE = (date(2015, 1, 1), date(2019, 1, 1))  # current records start in here


# --------------------------------------------------------------------------- public types


@dataclass(frozen=True)
class Product:
    """One product of the fixed catalogue."""

    product_id: str
    name: str
    category: str
    price: float


@dataclass(frozen=True)
class BadRowCounts:
    """Number of bad rows written, per kind (see the module docstring)."""

    blank_required: int = 0
    bad_json: int = 0
    negative_qty: int = 0
    non_numeric_qty: int = 0
    missing_pk: int = 0
    malformed: int = 0

    @property
    def total(self) -> int:
        """All bad rows."""
        return sum(self.as_dict().values())

    def as_dict(self) -> dict[str, int]:
        """Counts keyed by kind name, in ``BAD_ROW_KINDS`` order."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True)
class GenerationSummary:
    """What :func:`generate` wrote."""

    out_dir: Path
    customers_path: Path
    sales_orders_paths: tuple[Path, ...]
    customers: int  # distinct customers
    customer_rows: int  # rows of customers.csv (current + closed SCD2 records)
    orders: int  # good orders written
    bad_rows: BadRowCounts
    rows_per_file: tuple[int, ...]  # sales_orders rows (good + bad) per file
    start_date: date
    days: int
    seed: int

    @property
    def paths(self) -> tuple[Path, ...]:
        """Every file written."""
        return (self.customers_path, *self.sales_orders_paths)

    @property
    def rows_written(self) -> int:
        """sales_orders rows written, good and bad."""
        return self.orders + self.bad_rows.total

    def describe(self) -> str:
        """One-line human summary."""
        end = date.fromordinal(self.start_date.toordinal() + self.days - 1)
        bad = ", ".join(f"{k}={v}" for k, v in self.bad_rows.as_dict().items() if v)
        return (
            f"wrote {self.orders:,} orders (+{self.bad_rows.total:,} bad rows"
            f"{': ' + bad if bad else ''}) in {len(self.sales_orders_paths)} file(s) for "
            f"{self.customers:,} customers ({self.customer_rows:,} customer rows), "
            f"{self.start_date.isoformat()}..{end.isoformat()}, seed {self.seed}, "
            f"to {self.out_dir}"
        )


def order_number_base(start_date: date) -> int:
    """First order number of the batch starting on ``start_date``."""
    return (start_date - ORDER_NUMBER_EPOCH).days * ORDER_NUMBER_STRIDE


def sales_orders_filename(start_date: date, seed: int, part: int) -> str:
    """Name of one sales_orders file (``part`` counts from 0)."""
    return f"sales_orders_{start_date:%Y%m%d}_{seed}_{part:03d}.csv"


# --------------------------------------------------------------------------- catalogue


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
    n_cat = len(_CATEGORIES)
    # Global popularity skew: Zipf(1) over a random ranking inside every category.
    ranks = np.argsort(rng.random((n_cat, _PRODUCTS_PER_CATEGORY)), axis=1)
    weights = 1.0 / (ranks + 1.0)
    within_cdf = _row_cdf(weights / weights.sum(axis=1, keepdims=True))
    return _Catalogue(tuple(products), within_cdf)


def product_catalogue() -> tuple[Product, ...]:
    """The fixed product catalogue (~300 products in 12 categories), same for every seed."""
    return _catalogue().products


def _row_cdf(probabilities: np.ndarray) -> np.ndarray:
    """Row-wise cumulative sums with the last column forced to exactly 1."""
    cdf = np.cumsum(probabilities, axis=1)
    cdf[:, -1] = 1.0
    return cdf


def _sample_rows(rng: np.random.Generator, cdf: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Draw one column per entry of ``rows`` from the categorical rows of ``cdf``."""
    n_rows, n_cols = cdf.shape
    flat = (cdf + np.arange(n_rows)[:, None]).ravel()
    cols = np.searchsorted(flat, rows + rng.random(len(rows)), side="right") - rows * n_cols
    return np.clip(cols, 0, n_cols - 1)


def _sample_products(
    rng: np.random.Generator, pref_cdf: np.ndarray, cust: np.ndarray
) -> np.ndarray:
    """Products drawn from each customer's category taste and the global popularity."""
    cat = _catalogue()
    category = _sample_rows(rng, pref_cdf, cust)
    return category * _PRODUCTS_PER_CATEGORY + _sample_rows(rng, cat.within_cdf, category)


# --------------------------------------------------------------------------- customers


@dataclass(frozen=True)
class _Customers:
    ids: np.ndarray  # object array of str
    names_csv: np.ndarray  # object array of CSV-escaped names
    rate: np.ndarray  # orders per day at weekday weight 1 when active
    churn_p: np.ndarray
    pref_cdf: np.ndarray  # (customers, categories) CDF of category taste
    p_favourite: np.ndarray
    favourites: np.ndarray  # (customers, _N_FAVOURITES) product indices
    rows: list[tuple[str, ...]]  # customers.csv rows, SCD2 history included


def _unix(day: date) -> int:
    return int(datetime(day.year, day.month, day.day, tzinfo=timezone.utc).timestamp())


def _strs(values: np.ndarray) -> list[str]:
    """Integers as decimal strings."""
    return list(map(str, values.tolist()))


def _fmt(values: np.ndarray, spec: str) -> list[str]:
    """Numbers formatted with ``spec``."""
    return [format(v, spec) for v in values.tolist()]


def _address_columns(rng: np.random.Generator, n: int, city: np.ndarray) -> dict[str, list[str]]:
    """Draw street addresses in the given cities (the customers.csv address columns)."""
    number = rng.integers(1, 10_000, n)
    street = rng.integers(0, len(_STREETS), n)
    unit = np.where(rng.random(n) < 0.3, rng.integers(1, 500, n), 0)
    post = rng.integers(0, 100, n)
    district = rng.integers(1, 21, n)
    lon = np.array([c[3] for c in _CITIES])[city] + rng.normal(0.0, 0.05, n)
    lat = np.array([c[4] for c in _CITIES])[city] + rng.normal(0.0, 0.05, n)
    names = ("state", "city", "postcode", "street", "number", "unit", "region", "ship_to_address")
    cols: dict[str, list[str]] = {name: [] for name in names}
    drawn = (city, number, street, unit, post)
    for c, num, st, u, p in zip(*(a.tolist() for a in drawn), strict=True):
        name, state, prefix = _CITIES[c][:3]
        postcode = f"{prefix}{p:02d}"
        unit_str = str(u) if u else ""
        unit_part = f" Unit {unit_str}" if u else ""
        cols["state"].append(state)
        cols["city"].append(name)
        cols["postcode"].append(postcode)
        cols["street"].append(_STREETS[st])
        cols["number"].append(str(num))
        cols["unit"].append(unit_str)
        cols["region"].append(_REGIONS[state])
        cols["ship_to_address"].append(
            f"{num} {_STREETS[st]}{unit_part}, {name}, {state} {postcode}"
        )
    cols["district"] = _strs(district)
    cols["lon"] = _fmt(lon, ".6f")
    cols["lat"] = _fmt(lat, ".6f")
    return cols


def _other_state_city(rng: np.random.Generator, city: np.ndarray) -> np.ndarray:
    """For every city, a random city in another state."""
    states = np.array([c[1] for c in _CITIES])
    options = [np.flatnonzero(states != states[c]) for c in range(len(_CITIES))]
    width = max(len(o) for o in options)
    table = np.array([np.resize(o, width) for o in options])
    counts = np.array([len(o) for o in options])
    pick = (rng.random(len(city)) * counts[city]).astype(np.int64)
    return table[city, pick]


def _make_customers(seed: int, n: int) -> _Customers:
    """The customer population: a function of ``(seed, n)`` only."""
    rng = np.random.default_rng([seed, n, _CUSTOMER_STREAM])
    n_cat = len(_CATEGORIES)
    ids = 10_000_000 + np.cumsum(rng.integers(1, 60, n))
    first = np.array(_FIRST_NAMES, dtype=object)[rng.integers(0, len(_FIRST_NAMES), n)]
    last = np.array(_LAST_NAMES, dtype=object)[rng.integers(0, len(_LAST_NAMES), n)]
    names = first + " " + last
    tax_missing = rng.random(n) < 0.2
    tax_id = rng.integers(100_000_000, 1_000_000_000, n)
    tax_code = np.array(["A", "B", "C"])[rng.integers(0, 3, n)]
    valid_from = rng.integers(_unix(_SCD_FROM_RANGE[0]), _unix(_SCD_FROM_RANGE[1]), n)

    # Activity drives the order rate, units_purchased and loyalty; churn propensity is
    # higher for low loyalty and few units purchased.
    log_activity = rng.normal(0.0, 0.55, n)
    rate = _BASE_RATE * np.exp(log_activity)
    units = rng.poisson(45.0 * np.exp(log_activity + rng.normal(0.0, 0.35, n)))
    loyalty = np.digitize(log_activity + rng.normal(0.0, 0.45, n), [-0.45, 0.0, 0.45])
    units_z = (np.log1p(units) - np.log(45.0)) / 0.7
    churn_logit = (
        _CHURN_LOGIT_BASE - 0.75 * (loyalty - 1.5) - 0.45 * units_z + rng.normal(0.0, 0.5, n)
    )
    churn_p = 1.0 / (1.0 + np.exp(-churn_logit))

    # Latent taste segments: each prefers two categories.
    segment_share = rng.dirichlet(np.full(_N_SEGMENTS, _SEGMENT_SIZE_CONCENTRATION))
    profiles = np.full((_N_SEGMENTS, n_cat), _SEGMENT_PROFILE[0])
    for s in range(_N_SEGMENTS):
        top, second = rng.choice(n_cat, 2, replace=False)
        profiles[s, top] += _SEGMENT_PROFILE[1]
        profiles[s, second] += _SEGMENT_PROFILE[2]
    segment = rng.choice(_N_SEGMENTS, n, p=segment_share)
    pref = profiles[segment] * rng.gamma(3.0, 1.0 / 3.0, (n, n_cat))
    pref_cdf = _row_cdf(pref / pref.sum(axis=1, keepdims=True))
    p_favourite = rng.beta(2.0, 3.0, n)
    favourites = _sample_products(rng, pref_cdf, np.repeat(np.arange(n), _N_FAVOURITES))
    favourites = favourites.reshape(n, _N_FAVOURITES)

    city = rng.integers(0, len(_CITIES), n)
    current = _address_columns(rng, n, city)
    # SCD2 history: an older record with another address (in another state) and loyalty.
    has_history = rng.random(n) < _HISTORY_SHARE
    old = _address_columns(rng, n, _other_state_city(rng, city))
    old_loyalty = (loyalty + rng.integers(1, 4, n)) % 4
    old_units = (units * rng.uniform(0.3, 0.8, n)).astype(np.int64)
    old_from = valid_from - rng.integers(90, 1500, n) * 86_400

    shared = {
        "customer_id": _strs(ids),
        "tax_id": np.where(tax_missing, "", tax_id.astype(str)).tolist(),
        "tax_code": np.where(tax_missing, "", tax_code).tolist(),
        "customer_name": names.tolist(),
    }
    current.update(
        valid_from=_strs(valid_from),
        valid_to=[""] * n,
        units_purchased=_strs(units),
        loyalty_segment=_strs(loyalty),
    )
    old.update(
        valid_from=_strs(old_from),
        valid_to=_strs(valid_from),
        units_purchased=_strs(old_units),
        loyalty_segment=_strs(old_loyalty),
    )
    current_rows = list(zip(*({**shared, **current}[c] for c in CUSTOMER_COLUMNS), strict=True))
    old_rows = list(zip(*({**shared, **old}[c] for c in CUSTOMER_COLUMNS), strict=True))
    # Every closed record goes right before its customer's current record.
    history = np.flatnonzero(has_history)
    position = np.argsort(np.concatenate([2 * np.arange(n) + 1, 2 * history]), kind="stable")
    both = current_rows + [old_rows[i] for i in history.tolist()]
    rows = [both[k] for k in position.tolist()]
    return _Customers(
        ids=np.array(shared["customer_id"], dtype=object),
        names_csv=np.array([_escape(x) for x in shared["customer_name"]], dtype=object),
        rate=rate,
        churn_p=churn_p,
        pref_cdf=pref_cdf,
        p_favourite=p_favourite,
        favourites=favourites,
        rows=rows,
    )


# --------------------------------------------------------------------------- orders


def _weekday_weights(start_date: date, days: int) -> np.ndarray:
    """Order intensity of every day of the period (mean weekday = 1)."""
    weights = _WEEKDAY_WEIGHTS / _WEEKDAY_WEIGHTS.mean()
    return weights[(start_date.weekday() + np.arange(days)) % 7]


def _activity(day: np.ndarray, churn_day: np.ndarray, ramp: np.ndarray) -> np.ndarray:
    """Rate multiplier: 1, then linearly down to ``_CHURN_FLOOR`` over the ``ramp`` days
    before ``churn_day``, and 0 from ``churn_day`` on."""
    left = churn_day - day
    declining = _CHURN_FLOOR + (1.0 - _CHURN_FLOOR) * (left - 1) / ramp
    return np.where(left <= 0, 0.0, np.where(left <= ramp, declining, 1.0))


def _expected_orders(weights: np.ndarray, churn_day: np.ndarray, ramp: np.ndarray) -> np.ndarray:
    """Exact ``sum_d weights[d] * _activity(d, churn_day, ramp)`` per customer."""
    days = len(weights)
    s0 = np.concatenate([[0.0], np.cumsum(weights)])
    s1 = np.concatenate([[0.0], np.cumsum(weights * np.arange(days))])
    a = np.clip(churn_day - ramp, 0, days)
    b = np.clip(churn_day, 0, days)
    ramp_w = s0[b] - s0[a]
    ramp_wd = s1[b] - s1[a]
    return (
        s0[a]
        + _CHURN_FLOOR * ramp_w
        + (1.0 - _CHURN_FLOOR) / ramp * ((churn_day - 1) * ramp_w - ramp_wd)
    )


def _draw_order_times(
    rng: np.random.Generator,
    customers: _Customers,
    start_date: date,
    days: int,
    target: int | None,
) -> tuple[np.ndarray, np.ndarray]:
    """Customer index and unix seconds of every order, chronologically sorted.

    Each customer is a Poisson process with a weekday profile, an hour-of-day profile and,
    for this batch's churners, a linear decline to zero over 2-5 weeks before churning;
    sampled by thinning. With ``target`` the rates are scaled to a slightly larger
    expected total and the surplus is dropped uniformly at random.
    """
    n = len(customers.rate)
    weights = _weekday_weights(start_date, days)
    w_max = float(weights.max())
    churns = rng.random(n) < customers.churn_p
    first_churn_day = max(1, days // 10)  # every customer is active at the start
    churn_day = rng.integers(first_churn_day, max(days, first_churn_day + 1), n)
    churn_day = np.where(churns & (churn_day < days), churn_day, days + 10_000)
    ramp = rng.integers(14, 36, n)
    rate = customers.rate
    if target is not None:
        expected = float((rate * _expected_orders(weights, churn_day, ramp)).sum())
        margin = 1.0 + 4.0 / np.sqrt(max(target, 1)) + 1e-3  # ~4 sigma of the Poisson total
        scale = target / expected * margin if target and expected > 0 else 0.0
        rate = rate * scale
    cust = np.repeat(np.arange(n), rng.poisson(rate * w_max * days))
    day = rng.integers(0, days, len(cust))
    intensity = weights[day] * _activity(day, churn_day[cust], ramp[cust])
    keep = rng.random(len(cust)) * w_max < intensity
    cust, day = cust[keep], day[keep]
    if target is not None and len(cust) > target:
        mask = np.ones(len(cust), dtype=bool)
        mask[rng.choice(len(cust), len(cust) - target, replace=False)] = False
        cust, day = cust[mask], day[mask]
    hour_cdf = np.cumsum(_HOUR_WEIGHTS) / _HOUR_WEIGHTS.sum()
    hour = np.minimum(np.searchsorted(hour_cdf, rng.random(len(cust)), side="right"), 23)
    seconds = _unix(start_date) + day * 86_400 + hour * 3_600 + rng.integers(0, 3_600, len(cust))
    order = np.lexsort((cust, seconds))
    return cust[order], seconds[order]


def _escape(text: str) -> str:
    """Escape a field for a quoted CSV field: double every quote (RFC 4180)."""
    return text.replace('"', '""')


def _unescape(text: str) -> str:
    """Inverse of :func:`_escape`."""
    return text.replace('""', '"')


def _quoted_line(fields: Sequence[str]) -> str:
    """One CSV record with every field quoted, exactly as ``csv.writer(QUOTE_ALL)`` writes it."""
    return '"' + '","'.join(_escape(f) for f in fields) + '"\n'


def _line_item(product: Product, qty: int, promotion: dict[str, object] | None) -> str:
    """One ordered_products element, as JSON."""
    return json.dumps(
        {
            "curr": "USD",
            "id": product.product_id,
            "name": product.name,
            "price": product.price,
            "promotion_info": promotion,
            "qty": qty,
            "unit": "pcs",
        }
    )


@cache
def _line_item_table() -> np.ndarray:
    """CSV-escaped JSON of every (product, qty, promotion) line item.

    Index ``(product * _MAX_QTY + qty - 1) * (len(_PROMOTIONS) + 1) + promotion``.
    """
    promos: list[dict[str, object] | None] = [None]
    promos += [{"promo_disc": d, "promo_id": i, "promo_qty": q} for i, _, d, q in _PROMOTIONS]
    return np.array(
        [
            _escape(_line_item(p, qty, promo))
            for p in product_catalogue()
            for qty in range(1, _MAX_QTY + 1)
            for promo in promos
        ],
        dtype=object,
    )


@cache
def _click_table() -> np.ndarray:
    """CSV-escaped JSON of every (product, clicks) pair, index ``p*MAX_CLICKS+clicks-1``."""
    return np.array(
        [
            _escape(json.dumps([p.product_id, str(c)]))
            for p in product_catalogue()
            for c in range(1, _MAX_CLICKS + 1)
        ],
        dtype=object,
    )


def _promo_json(key: int) -> str:
    """CSV-escaped promo_info for key ``(promotion*n_products + product)*2 + pretty``."""
    pretty = key % 2
    promotion, product = divmod(key // 2, len(product_catalogue()))
    promo_id, code, disc, qty = _PROMOTIONS[promotion]
    info = {
        "promo_code": code,
        "promo_disc": disc,
        "promo_id": promo_id,
        "promo_item": product_catalogue()[product].product_id,
        "promo_qty": qty,
    }
    return _escape(json.dumps(info, indent=2 if pretty else None))


def _json_arrays(parts: np.ndarray, counts: np.ndarray) -> list[str]:
    """Join consecutive groups of ``counts[i]`` JSON values into JSON arrays."""
    items = parts.tolist()
    ends = np.cumsum(counts).tolist()
    starts = [0, *ends][:-1]
    return ["[" + ", ".join(items[a:b]) + "]" for a, b in zip(starts, ends, strict=True)]


def _order_columns(
    rng: np.random.Generator,
    customers: _Customers,
    cust: np.ndarray,
    seconds: np.ndarray,
    first_number: int,
) -> list[list[str]]:
    """The ``ORDER_COLUMNS`` of the good orders, as lists of CSV-escaped strings.

    Line items come from the customer's favourites (repeat buying) or from their category
    taste times the global popularity; duplicates within an order are dropped. Clicked
    items are the ordered products plus a few browsed ones from the same taste.
    """
    n = len(cust)
    n_products = len(product_catalogue())
    n_items = 1 + np.minimum(rng.poisson(1.6, n), 9)
    item_order = np.repeat(np.arange(n), n_items)
    item_cust = cust[item_order]
    m = len(item_order)
    from_favourites = rng.random(m) < customers.p_favourite[item_cust]
    fav_cdf = np.cumsum(_FAVOURITE_WEIGHTS) / _FAVOURITE_WEIGHTS.sum()
    fav_k = np.minimum(np.searchsorted(fav_cdf, rng.random(m), side="right"), _N_FAVOURITES - 1)
    fresh = _sample_products(rng, customers.pref_cdf, item_cust)
    product = np.where(from_favourites, customers.favourites[item_cust, fav_k], fresh)
    qty = 1 + np.minimum(rng.poisson(0.35, m), _MAX_QTY - 1)
    promotion = np.where(rng.random(m) < 0.08, rng.integers(1, len(_PROMOTIONS) + 1, m), 0)
    clicks = 1 + np.minimum(rng.poisson(0.8, m), _MAX_CLICKS - 1)
    browse_order = np.repeat(np.arange(n), rng.poisson(1.2, n))
    browse_product = _sample_products(rng, customers.pref_cdf, cust[browse_order])
    browse_clicks = 1 + np.minimum(rng.poisson(0.5, len(browse_order)), _MAX_CLICKS - 1)
    has_promo = rng.random(n) < _PROMO_ORDER_SHARE
    promo_pick = rng.integers(0, len(_PROMOTIONS), n)
    pretty = rng.random(n) < _PRETTY_PROMO_SHARE

    # Drop repeated products within an order, keeping the draw order.
    _, first = np.unique(item_order * n_products + product, return_index=True)
    keep = np.sort(first)
    item_order, product = item_order[keep], product[keep]
    qty, promotion, clicks = qty[keep], promotion[keep], clicks[keep]
    line_counts = np.bincount(item_order, minlength=n)
    item_keys = (product * _MAX_QTY + qty - 1) * (len(_PROMOTIONS) + 1) + promotion
    ordered_products = _json_arrays(_line_item_table()[item_keys], line_counts)

    # Clicked items: grouped by order, sorted by product, ordered products' clicks win.
    click_order = np.concatenate([item_order, browse_order])
    click_product = np.concatenate([product, browse_product])
    click_keys = click_product * _MAX_CLICKS + np.concatenate([clicks, browse_clicks]) - 1
    _, first = np.unique(click_order * n_products + click_product, return_index=True)
    click_counts = np.bincount(click_order[first], minlength=n)
    clicked_items = _json_arrays(_click_table()[click_keys[first]], click_counts)

    first_product = product[np.cumsum(line_counts) - line_counts]
    promo_keys = ((promo_pick * n_products + first_product) * 2 + pretty)[has_promo]
    unique_keys, inverse = np.unique(promo_keys, return_inverse=True)
    promo_info = np.full(n, "{}", dtype=object)  # no promotion: an empty object, never blank
    promo_texts = np.array([_promo_json(k) for k in unique_keys.tolist()], dtype=object)
    promo_info[has_promo] = promo_texts[inverse]
    return [
        clicked_items,
        customers.ids[cust].tolist(),
        customers.names_csv[cust].tolist(),
        _strs(line_counts),
        _strs(seconds),
        _strs(first_number + np.arange(n)),
        ordered_products,
        promo_info.tolist(),
    ]


# --------------------------------------------------------------------------- bad rows

_COL = {name: i for i, name in enumerate(ORDER_COLUMNS)}


def _corrupt(kind: str, row: list[str], nth: int, rng: np.random.Generator) -> list[str]:
    """Turn a copy of a good row into a bad row of ``kind`` (``nth`` of that kind)."""
    products = _COL["ordered_products"]
    if kind == BLANK_REQUIRED:
        row[_COL[BLANKED_FIELDS[nth % len(BLANKED_FIELDS)]]] = ""
    elif kind == BAD_JSON:
        row[products] = row[products][: len(row[products]) // 2]
    elif kind in (NEGATIVE_QTY, NON_NUMERIC_QTY):
        items = json.loads(row[products])
        qty = int(items[0]["qty"])
        if kind == NEGATIVE_QTY:
            items[0]["qty"] = -int(rng.integers(1, 4)) * qty
        else:
            items[0]["qty"] = _NUMBER_WORDS[qty]
        row[products] = json.dumps(items)
    elif kind == MISSING_PK:
        row[_COL["order_number"]] = ""
    elif kind == MALFORMED:
        row = row[:5] if nth % 2 == 0 else [*row, "unexpected"]
    return row


def _bad_rows(
    rng: np.random.Generator,
    counts: BadRowCounts,
    columns: list[list[str]],
    next_number: int,
) -> tuple[list[str], np.ndarray]:
    """Bad rows as CSV lines, sorted by donor (the good row each copies), and their donors."""
    n_good = len(columns[0])
    per_kind = counts.as_dict()
    kinds = np.repeat(np.arange(len(BAD_ROW_KINDS)), [per_kind[k] for k in BAD_ROW_KINDS])
    kinds = rng.permutation(kinds)
    donors = rng.integers(0, n_good, len(kinds)) if n_good else np.zeros(0, dtype=np.int64)
    by_donor = np.argsort(donors, kind="stable")
    kinds, donors = kinds[by_donor], donors[by_donor]
    seen = dict.fromkeys(BAD_ROW_KINDS, 0)
    lines: list[str] = []
    for k, donor in zip(kinds.tolist(), donors.tolist(), strict=True):
        kind = BAD_ROW_KINDS[k]
        row = [_unescape(column[donor]) for column in columns]
        row[_COL["order_number"]] = str(next_number)
        row = _corrupt(kind, row, seen[kind], rng)
        seen[kind] += 1
        if len(row) > _COL["order_number"] and row[_COL["order_number"]]:
            next_number += 1
        lines.append(_quoted_line(row))
    return lines, donors


def _bad_row_counts(
    n_good: int, bad_fraction: float, missing_pk_fraction: float, malformed_fraction: float
) -> BadRowCounts:
    """How many bad rows of every kind: each fraction times the number of good orders."""
    if n_good == 0:
        return BadRowCounts()
    n_bad = round(bad_fraction * n_good)
    split = [
        n_bad // len(BAD_FRACTION_KINDS) + (i < n_bad % len(BAD_FRACTION_KINDS))
        for i in range(len(BAD_FRACTION_KINDS))
    ]
    return BadRowCounts(
        *split,
        missing_pk=round(missing_pk_fraction * n_good),
        malformed=round(malformed_fraction * n_good),
    )


# --------------------------------------------------------------------------- writing


def _write_atomically(path: Path, lines: Sequence[str]) -> None:
    """Write text lines via a hidden temporary file (which Spark would ignore)."""
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w", newline="", encoding="utf-8") as fh:
        fh.writelines(lines)
    os.replace(tmp, path)


def _write_customers(path: Path, rows: Sequence[Sequence[str]]) -> None:
    """customers.csv: plain CSV, quoting only fields that need it (the addresses)."""
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, quoting=csv.QUOTE_MINIMAL, lineterminator="\n")
        writer.writerow(CUSTOMER_COLUMNS)
        writer.writerows(rows)
    os.replace(tmp, path)


def _validate(
    customers: int,
    days: int,
    seed: int,
    start_date: date,
    orders: int | None,
    drops: int,
    fractions: dict[str, float],
) -> None:
    if customers < 1:
        raise ValueError(f"customers must be >= 1, got {customers}")
    if days < 1:
        raise ValueError(f"days must be >= 1, got {days}")
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    if start_date < ORDER_NUMBER_EPOCH:
        raise ValueError(f"start_date must be on or after {ORDER_NUMBER_EPOCH}, got {start_date}")
    if orders is not None and not 0 <= orders < ORDER_NUMBER_STRIDE:
        raise ValueError(f"orders must be in [0, {ORDER_NUMBER_STRIDE}), got {orders}")
    if drops < 1:
        raise ValueError(f"drops must be >= 1, got {drops}")
    for name, value in fractions.items():
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"{name} must be in [0, 1], got {value}")


def generate(
    out_dir: str | os.PathLike[str],
    *,
    customers: int = 1000,
    days: int = 90,
    seed: int = 0,
    start_date: date = date(2024, 1, 1),
    orders: int | None = None,
    drops: int = 1,
    bad_fraction: float = 0.0,
    missing_pk_fraction: float = 0.0,
    malformed_fraction: float = 0.0,
) -> GenerationSummary:
    """Write customers.csv and the sales_orders files of one batch under ``out_dir``.

    ``orders`` (if given) scales the order rates so that exactly that many good orders are
    written (bar a vanishingly unlikely shortfall); by default a customer places ~0.1-0.3
    orders per active day. Bad rows are extra rows, ``fraction * good orders`` of each
    kind. Existing sales_orders files of the same batch (same start date and seed) are
    replaced. Same arguments -> byte-identical files.
    """
    fractions = {
        "bad_fraction": bad_fraction,
        "missing_pk_fraction": missing_pk_fraction,
        "malformed_fraction": malformed_fraction,
    }
    _validate(customers, days, seed, start_date, orders, drops, fractions)
    out = Path(out_dir)
    population = _make_customers(seed, customers)
    batch = [seed, start_date.toordinal(), days]
    cust, seconds = _draw_order_times(
        np.random.default_rng([*batch, _ORDER_STREAM]), population, start_date, days, orders
    )
    base = order_number_base(start_date)
    columns = _order_columns(
        np.random.default_rng([*batch, _ORDER_STREAM, 1]), population, cust, seconds, base
    )
    n_good = len(cust)
    counts = _bad_row_counts(n_good, bad_fraction, missing_pk_fraction, malformed_fraction)
    if n_good + counts.total > ORDER_NUMBER_STRIDE:
        raise ValueError(f"a batch holds at most {ORDER_NUMBER_STRIDE:,} rows")
    bad, donors = _bad_rows(
        np.random.default_rng([*batch, _BAD_ROW_STREAM]), counts, columns, base + n_good
    )
    # The columns are already CSV-escaped, so a record is just quotes and commas around them.
    good = ['"' + '","'.join(fields) + '"\n' for fields in zip(*columns, strict=True)]
    del columns

    # Every bad row goes right after its donor; files split the period into equal spans.
    if bad:
        keys = np.concatenate([2 * np.arange(n_good), 2 * donors + 1])
        position = np.argsort(keys, kind="stable")
        both = good + bad
        rows = [both[k] for k in position.tolist()]
        row_seconds = np.concatenate([seconds, seconds[donors]])[position]
    else:
        rows, row_seconds = good, seconds
    period = days * 86_400
    bounds = _unix(start_date) + np.arange(1, drops) * period // drops
    splits = [0, *np.searchsorted(row_seconds, bounds, side="left").tolist(), len(rows)]

    customers_path = out / "customers" / "customers.csv"
    customers_path.parent.mkdir(parents=True, exist_ok=True)
    _write_customers(customers_path, population.rows)
    orders_dir = out / "sales_orders"
    orders_dir.mkdir(parents=True, exist_ok=True)
    paths = tuple(orders_dir / sales_orders_filename(start_date, seed, p) for p in range(drops))
    for stale in orders_dir.glob(f"sales_orders_{start_date:%Y%m%d}_{seed}_*.csv"):
        if stale not in paths:
            stale.unlink()
    header = _quoted_line(ORDER_COLUMNS)
    for path, a, b in zip(paths, splits[:-1], splits[1:], strict=True):
        _write_atomically(path, [header, *rows[a:b]])
    return GenerationSummary(
        out_dir=out,
        customers_path=customers_path,
        sales_orders_paths=paths,
        customers=customers,
        customer_rows=len(population.rows),
        orders=n_good,
        bad_rows=counts,
        rows_per_file=tuple(b - a for a, b in zip(splits[:-1], splits[1:], strict=True)),
        start_date=start_date,
        days=days,
        seed=seed,
    )


# --------------------------------------------------------------------------- CLI


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="recsys-generate",
        description="Write synthetic Databricks-style retail customers and sales_orders CSVs.",
    )
    p.add_argument("--out", required=True, type=Path, help="output directory")
    p.add_argument("--customers", type=int, default=1000, help="number of customers")
    p.add_argument("--days", type=int, default=90, help="length of the period in days")
    p.add_argument("--seed", type=int, default=0, help="random seed (>= 0)")
    p.add_argument(
        "--start-date",
        type=date.fromisoformat,
        default=date(2024, 1, 1),
        help="first day of the period, YYYY-MM-DD (default 2024-01-01)",
    )
    p.add_argument(
        "--orders",
        type=int,
        default=None,
        help="scale the order rates to write about this many orders",
    )
    p.add_argument("--drops", type=int, default=1, help="split the orders into K files by time")
    p.add_argument(
        "--bad-fraction",
        type=float,
        default=0.0,
        help="rows with a blank required field, bad JSON or a bad qty",
    )
    p.add_argument(
        "--missing-pk-fraction", type=float, default=0.0, help="rows with an empty order_number"
    )
    p.add_argument(
        "--malformed-fraction",
        type=float,
        default=0.0,
        help="rows with the wrong number of CSV fields",
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point ``recsys-generate``; prints a one-line summary."""
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        summary = generate(
            args.out,
            customers=args.customers,
            days=args.days,
            seed=args.seed,
            start_date=args.start_date,
            orders=args.orders,
            drops=args.drops,
            bad_fraction=args.bad_fraction,
            missing_pk_fraction=args.missing_pk_fraction,
            malformed_fraction=args.malformed_fraction,
        )
    except ValueError as exc:
        parser.error(str(exc))
    print(summary.describe())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
