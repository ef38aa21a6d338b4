"""The good orders: when every customer orders (rhythm, churn) and what they buy and click."""

from __future__ import annotations

import json
from datetime import date
from functools import cache

import numpy as np

from recsys_assets.datagen._common import escape, int_strings, unix_time
from recsys_assets.datagen.catalogue import Product, product_catalogue, sample_products
from recsys_assets.datagen.customers import N_FAVOURITES, Customers

_CHURN_FLOOR = 0.1  # rate multiplier on a churner's last active day
# Mon..Sun and hour-of-day order intensity (normalised to mean 1 below).
_WEEKDAY_WEIGHTS = np.array([0.9, 0.85, 0.9, 0.95, 1.1, 1.2, 1.1])
_HOUR_WEIGHTS = np.array(
    [0.2, 0.1, 0.1, 0.1, 0.1, 0.2, 0.4, 0.7, 0.9, 1.0, 1.1, 1.2,
     1.3, 1.2, 1.1, 1.1, 1.2, 1.4, 1.7, 1.9, 1.8, 1.5, 1.0, 0.5]
)  # fmt: skip

# Which of a customer's favourites (best first) a re-bought item is.
_FAVOURITE_WEIGHTS = np.array([0.35, 0.25, 0.18, 0.12, 0.10])
_MAX_QTY = 9
_MAX_CLICKS = 6
_PROMO_ORDER_SHARE = 0.18
_PRETTY_PROMO_SHARE = 0.25  # of promo rows: pretty-printed, i.e. multi-line JSON
# (promo_id, promo_code, discount, minimum quantity) used in promotion_info / promo_info.
_PROMOTIONS = (
    (101, "WELCOME10", 0.1, 1), (102, "SPRING15", 0.15, 1), (103, "BUNDLE2", 0.2, 2),
    (104, "FLASH25", 0.25, 1), (105, "LOYAL5", 0.05, 1), (106, "BULK3", 0.3, 3),
)  # fmt: skip


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


def draw_order_times(
    rng: np.random.Generator,
    customers: Customers,
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
    seconds = (
        unix_time(start_date) + day * 86_400 + hour * 3_600 + rng.integers(0, 3_600, len(cust))
    )
    order = np.lexsort((cust, seconds))
    return cust[order], seconds[order]


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
            escape(_line_item(p, qty, promo))
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
            escape(json.dumps([p.product_id, str(c)]))
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
    return escape(json.dumps(info, indent=2 if pretty else None))


def _json_arrays(parts: np.ndarray, counts: np.ndarray) -> list[str]:
    """Join consecutive groups of ``counts[i]`` JSON values into JSON arrays."""
    items = parts.tolist()
    ends = np.cumsum(counts).tolist()
    starts = [0, *ends][:-1]
    return ["[" + ", ".join(items[a:b]) + "]" for a, b in zip(starts, ends, strict=True)]


def order_columns(
    rng: np.random.Generator,
    customers: Customers,
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
    fav_k = np.minimum(np.searchsorted(fav_cdf, rng.random(m), side="right"), N_FAVOURITES - 1)
    fresh = sample_products(rng, customers.pref_cdf, item_cust)
    product = np.where(from_favourites, customers.favourites[item_cust, fav_k], fresh)
    qty = 1 + np.minimum(rng.poisson(0.35, m), _MAX_QTY - 1)
    promotion = np.where(rng.random(m) < 0.08, rng.integers(1, len(_PROMOTIONS) + 1, m), 0)
    clicks = 1 + np.minimum(rng.poisson(0.8, m), _MAX_CLICKS - 1)
    browse_order = np.repeat(np.arange(n), rng.poisson(1.2, n))
    browse_product = sample_products(rng, customers.pref_cdf, cust[browse_order])
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
        int_strings(line_counts),
        int_strings(seconds),
        int_strings(first_number + np.arange(n)),
        ordered_products,
        promo_info.tolist(),
    ]
