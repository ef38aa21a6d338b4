"""Monitoring numbers: feature and score drift (PSI), and what the recommendations cover.

Pure computations, no Dagster: ``recsys_assets.assets.monitoring`` turns them into asset checks.

**PSI** (population stability index) of a feature between a reference sample (the data the
model was trained on, or the previous batch) and a current one::

    PSI = sum over bins i of (q_i - p_i) * ln(q_i / p_i)

with ``p_i`` and ``q_i`` the shares of the reference and of the current rows in bin ``i``.
Numeric features: the bins are cut at the reference's deciles (``n_bins - 1`` inner quantiles,
duplicates dropped, so a feature with few distinct values gets fewer, wider bins), each bin
closed on the right, ``(-inf, e_1], (e_1, e_2], ..., (e_k, inf)``; categorical features: one bin
per category seen on either side. Missing values are a bin of their own. A bin empty on one
side would make the log infinite: shares are floored at ``EPSILON`` (1e-4). PSI is 0 for
identical distributions and grows with the shift; the usual reading is < 0.1 stable, 0.1-0.2
moderate, > 0.2 a significant shift.
"""

import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

EPSILON = 1e-4
N_BINS = 10
PSI_THRESHOLD = 0.2  # the usual "significant shift"
TOP_PRODUCTS = 10  # concentration: the share of recommendation rows on this many products


def bin_shares(values: pd.Series, edges: np.ndarray) -> np.ndarray:
    """Shares of ``values`` in the bins ``(-inf, e_1], ..., (e_k, inf)``, then missing values."""
    present = values.dropna().to_numpy(dtype="float64")
    index = np.searchsorted(edges, present, side="left")  # e_{i-1} < x <= e_i -> i
    counts = np.bincount(index, minlength=len(edges) + 1).astype("float64")
    counts = np.append(counts, float(values.isna().sum()))
    return counts / max(len(values), 1)


def psi_from_shares(reference: np.ndarray, current: np.ndarray, epsilon: float = EPSILON) -> float:
    """``sum((q - p) * ln(q / p))`` over bins, each share floored at ``epsilon``."""
    p = np.maximum(np.asarray(reference, dtype="float64"), epsilon)
    q = np.maximum(np.asarray(current, dtype="float64"), epsilon)
    return float(np.sum((q - p) * np.log(q / p)))


def numeric_psi(reference: pd.Series, current: pd.Series, n_bins: int = N_BINS) -> float:
    """PSI with bins at the reference's quantiles (see the module's docstring)."""
    present = reference.dropna().astype("float64")
    if present.empty:
        edges = np.array([], dtype="float64")
    else:
        inner = np.linspace(0, 1, n_bins + 1)[1:-1]
        edges = np.unique(np.quantile(present.to_numpy(), inner))
    return psi_from_shares(
        bin_shares(reference.astype("float64"), edges), bin_shares(current.astype("float64"), edges)
    )


def categorical_psi(reference: pd.Series, current: pd.Series) -> float:
    """PSI with one bin per category (missing values one more)."""
    ref = reference.astype(object).where(reference.notna(), None)
    cur = current.astype(object).where(current.notna(), None)
    ref_shares = ref.value_counts(normalize=True, dropna=False)
    cur_shares = cur.value_counts(normalize=True, dropna=False)
    categories = ref_shares.index.union(cur_shares.index)
    return psi_from_shares(
        ref_shares.reindex(categories, fill_value=0.0).to_numpy(),
        cur_shares.reindex(categories, fill_value=0.0).to_numpy(),
    )


def feature_psi(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    numeric: Iterable[str],
    categorical: Iterable[str] = (),
    n_bins: int = N_BINS,
) -> dict[str, float]:
    """PSI of every feature, by name."""
    result = {name: numeric_psi(reference[name], current[name], n_bins) for name in numeric}
    result.update({name: categorical_psi(reference[name], current[name]) for name in categorical})
    return result


@dataclass(frozen=True)
class DriftSummary:
    psi: dict[str, float]  # feature -> PSI
    threshold: float

    @property
    def max_psi(self) -> float:
        return max(self.psi.values(), default=0.0)

    @property
    def max_psi_feature(self) -> str:
        return max(self.psi, key=self.psi.__getitem__) if self.psi else "none"

    @property
    def drifted(self) -> list[str]:
        """Features whose PSI is above the threshold, the largest first."""
        over = [name for name, value in self.psi.items() if value > self.threshold]
        return sorted(over, key=lambda name: -self.psi[name])

    @property
    def drifted_share(self) -> float:
        return len(self.drifted) / len(self.psi) if self.psi else 0.0

    def table(self) -> pd.DataFrame:
        """One row per feature, the largest PSI first: feature, psi, drifted."""
        rows = sorted(self.psi.items(), key=lambda item: -item[1])
        frame = pd.DataFrame(rows, columns=["feature", "psi"])
        return frame.assign(drifted=frame["psi"] > self.threshold)

    def markdown(self) -> str:
        lines = ["| feature | PSI | over threshold |", "|---|---|---|"]
        for row in self.table().itertuples():
            lines.append(f"| {row.feature} | {row.psi:.4f} | {'yes' if row.drifted else ''} |")
        return "\n".join(lines)


def summarize(psi: dict[str, float], threshold: float = PSI_THRESHOLD) -> DriftSummary:
    if any(not math.isfinite(v) for v in psi.values()):
        raise ValueError(f"PSI must be finite: {psi}")
    return DriftSummary(dict(psi), threshold)


def drift_report_html(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    numeric: Iterable[str],
    categorical: Iterable[str],
    threshold: float,
    path: str,
) -> None:
    """Evidently's data drift report of ``current`` against ``reference`` (PSI per column, at
    ``threshold``, with its distributions), a self-contained HTML page written to ``path``.

    Evidently bins with its own rules, so its PSI may differ a little from ``feature_psi``'s:
    the numbers the checks judge are ours; the report is for looking at the distributions.
    """
    # Imported here: Evidently (plotly, statsmodels) takes seconds to import.
    from evidently import DataDefinition, Dataset, Report  # noqa: PLC0415
    from evidently.presets import DataDriftPreset  # noqa: PLC0415

    numeric, categorical = list(numeric), list(categorical)
    definition = DataDefinition(numerical_columns=numeric, categorical_columns=categorical)
    columns = [*numeric, *categorical]

    def dataset(frame: pd.DataFrame) -> "Dataset":
        return Dataset.from_pandas(frame[columns].copy(), data_definition=definition)

    report = Report([DataDriftPreset(method="psi", threshold=threshold)])
    report.run(dataset(current), dataset(reference)).save_html(path)


# --------------------------------------------------------------------------- recommendations


@dataclass(frozen=True)
class RecommendationMetrics:
    rows: int
    customers: int  # the customers who should have a list (current customers)
    customers_with_full_list: int  # customers with k rows
    recommended_products: int  # distinct products recommended
    catalogue_products: int  # distinct products ever ordered
    top_products_rows: int  # rows going to the TOP_PRODUCTS most recommended products
    popularity_rows: int  # rows from the popularity fallback

    @staticmethod
    def share(part: int, whole: int) -> float:
        return part / whole if whole else 0.0

    @property
    def catalogue_coverage(self) -> float:
        return self.share(self.recommended_products, self.catalogue_products)

    @property
    def full_list_share(self) -> float:
        return self.share(self.customers_with_full_list, self.customers)

    @property
    def top_products_concentration(self) -> float:
        return self.share(self.top_products_rows, self.rows)

    @property
    def popularity_share(self) -> float:
        return self.share(self.popularity_rows, self.rows)


def recommendation_metrics(
    recommendations: DataFrame,
    catalogue: DataFrame,
    customers: DataFrame | None,
    k: int,
    top: int = TOP_PRODUCTS,
    popularity_source: str = "popularity",
) -> RecommendationMetrics:
    """The numbers of ``recommendations`` (customer_id, product_id, source), aggregated in Spark.

    ``catalogue``: a ``product_id`` column, every product that could be recommended;
    ``customers``: a ``customer_id`` column, everyone who should get a list (None: the customers
    in ``recommendations``, so one left without a row does not count against the share).
    """
    per_product = recommendations.groupBy("product_id").agg(F.count(F.lit(1)).alias("n"))
    ranked = per_product.withColumn(
        "_r", F.row_number().over(Window.orderBy(F.desc("n"), F.asc("product_id")))
    )
    products = ranked.agg(
        F.count(F.lit(1)).alias("products"),
        F.coalesce(F.sum("n"), F.lit(0)).alias("rows"),
        F.coalesce(F.sum(F.when(F.col("_r") <= top, F.col("n"))), F.lit(0)).alias("top_rows"),
    ).first()
    per_customer = recommendations.groupBy("customer_id").agg(F.count(F.lit(1)).alias("n"))
    full = per_customer.agg(
        F.count(F.lit(1)).alias("listed"), F.count(F.when(F.col("n") >= k, 1)).alias("full")
    ).first()
    popularity = recommendations.where(F.col("source") == popularity_source).count()
    catalogue_size = catalogue.select("product_id").where("product_id IS NOT NULL").distinct()
    wanted = (
        customers.select("customer_id").distinct().count()
        if customers is not None
        else int(full["listed"])
    )
    return RecommendationMetrics(
        rows=int(products["rows"]),
        customers=int(wanted),
        customers_with_full_list=int(full["full"]),
        recommended_products=int(products["products"]),
        catalogue_products=int(catalogue_size.count()),
        top_products_rows=int(products["top_rows"]),
        popularity_rows=int(popularity),
    )
