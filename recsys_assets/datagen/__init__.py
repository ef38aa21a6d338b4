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

Modules: ``catalogue`` (the fixed products), ``customers`` (the population), ``orders``
(the good orders), ``bad_rows`` (the kinds above and how they are made), ``batch``
(``generate``: one batch's files), ``cli`` (``recsys-generate``).
"""

from recsys_assets.datagen.bad_rows import (
    BAD_FRACTION_KINDS,
    BAD_JSON,
    BAD_ROW_KINDS,
    BLANK_REQUIRED,
    BLANKED_FIELDS,
    MALFORMED,
    MISSING_PK,
    NEGATIVE_QTY,
    NON_NUMERIC_QTY,
    BadRowCounts,
)
from recsys_assets.datagen.batch import (
    ORDER_NUMBER_EPOCH,
    ORDER_NUMBER_STRIDE,
    GenerationSummary,
    generate,
    order_number_base,
    sales_orders_filename,
)
from recsys_assets.datagen.catalogue import Product, product_catalogue
from recsys_assets.datagen.cli import main
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
