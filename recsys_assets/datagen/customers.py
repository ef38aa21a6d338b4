"""The customer population: taste segments, order rates, churn propensity, SCD2 records."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import numpy as np

from recsys_assets.datagen._common import CUSTOMER_STREAM, escape, int_strings, row_cdf, unix_time
from recsys_assets.datagen.catalogue import N_CATEGORIES, sample_products
from recsys_assets.schemas import CUSTOMERS_COLUMNS as CUSTOMER_COLUMNS

_N_SEGMENTS = 10
_SEGMENT_SIZE_CONCENTRATION = 10.0  # Dirichlet parameter of the segment sizes
# Category weights of a taste segment: every category, plus its favourite and its second.
_SEGMENT_PROFILE = (0.2, 4.0, 3.0)
N_FAVOURITES = 5  # products per customer that their orders often re-buy
_HISTORY_SHARE = 0.10
_BASE_RATE = 0.16  # median orders per active customer per (average) day
_CHURN_LOGIT_BASE = -1.0

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


@dataclass(frozen=True)
class Customers:
    """What the orders are drawn from, and the customers.csv rows."""

    ids: np.ndarray  # object array of str
    names_csv: np.ndarray  # object array of CSV-escaped names
    rate: np.ndarray  # orders per day at weekday weight 1 when active
    churn_p: np.ndarray
    pref_cdf: np.ndarray  # (customers, categories) CDF of category taste
    p_favourite: np.ndarray
    favourites: np.ndarray  # (customers, N_FAVOURITES) product indices
    rows: list[tuple[str, ...]]  # customers.csv rows, SCD2 history included


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
    cols["district"] = int_strings(district)
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


def make_customers(seed: int, n: int) -> Customers:
    """The customer population: a function of ``(seed, n)`` only."""
    rng = np.random.default_rng([seed, n, CUSTOMER_STREAM])
    n_cat = N_CATEGORIES
    ids = 10_000_000 + np.cumsum(rng.integers(1, 60, n))
    first = np.array(_FIRST_NAMES, dtype=object)[rng.integers(0, len(_FIRST_NAMES), n)]
    last = np.array(_LAST_NAMES, dtype=object)[rng.integers(0, len(_LAST_NAMES), n)]
    names = first + " " + last
    tax_missing = rng.random(n) < 0.2
    tax_id = rng.integers(100_000_000, 1_000_000_000, n)
    tax_code = np.array(["A", "B", "C"])[rng.integers(0, 3, n)]
    valid_from = rng.integers(unix_time(_SCD_FROM_RANGE[0]), unix_time(_SCD_FROM_RANGE[1]), n)

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
    pref_cdf = row_cdf(pref / pref.sum(axis=1, keepdims=True))
    p_favourite = rng.beta(2.0, 3.0, n)
    favourites = sample_products(rng, pref_cdf, np.repeat(np.arange(n), N_FAVOURITES))
    favourites = favourites.reshape(n, N_FAVOURITES)

    city = rng.integers(0, len(_CITIES), n)
    current = _address_columns(rng, n, city)
    # SCD2 history: an older record with another address (in another state) and loyalty.
    has_history = rng.random(n) < _HISTORY_SHARE
    old = _address_columns(rng, n, _other_state_city(rng, city))
    old_loyalty = (loyalty + rng.integers(1, 4, n)) % 4
    old_units = (units * rng.uniform(0.3, 0.8, n)).astype(np.int64)
    old_from = valid_from - rng.integers(90, 1500, n) * 86_400

    shared = {
        "customer_id": int_strings(ids),
        "tax_id": np.where(tax_missing, "", tax_id.astype(str)).tolist(),
        "tax_code": np.where(tax_missing, "", tax_code).tolist(),
        "customer_name": names.tolist(),
    }
    current.update(
        valid_from=int_strings(valid_from),
        valid_to=[""] * n,
        units_purchased=int_strings(units),
        loyalty_segment=int_strings(loyalty),
    )
    old.update(
        valid_from=int_strings(old_from),
        valid_to=int_strings(valid_from),
        units_purchased=int_strings(old_units),
        loyalty_segment=int_strings(old_loyalty),
    )
    current_rows = list(zip(*({**shared, **current}[c] for c in CUSTOMER_COLUMNS), strict=True))
    old_rows = list(zip(*({**shared, **old}[c] for c in CUSTOMER_COLUMNS), strict=True))
    # Every closed record goes right before its customer's current record.
    history = np.flatnonzero(has_history)
    position = np.argsort(np.concatenate([2 * np.arange(n) + 1, 2 * history]), kind="stable")
    both = current_rows + [old_rows[i] for i in history.tolist()]
    rows = [both[k] for k in position.tolist()]
    return Customers(
        ids=np.array(shared["customer_id"], dtype=object),
        names_csv=np.array([escape(x) for x in shared["customer_name"]], dtype=object),
        rate=rate,
        churn_p=churn_p,
        pref_cdf=pref_cdf,
        p_favourite=p_favourite,
        favourites=favourites,
        rows=rows,
    )
