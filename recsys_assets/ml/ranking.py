"""The one ranking rule of recommendations: best dot products first, what was bought left out.

numpy only: the batch table (``ml.als``, in Spark's Python workers) and the served recommender
(``ml.recommender``, in MLflow's scoring server) both rank with it, and a worker that imports
it loads nothing else of the project.
"""

from collections.abc import Sequence

import numpy as np


def top_k_unseen(
    users: np.ndarray, items: np.ndarray, seen: Sequence[np.ndarray], k: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """For each row of ``users`` (factors), the ``k`` items of ``items`` with the highest dot
    product that are not among the row's ``seen`` item indices, ties by item index (fewer when
    fewer are unseen): (user row, item index, score, 1-based rank) arrays, in rank order per row.

    Scores are computed in double precision from the float32 factors (whose products are exact
    there), so one user alone and a block of thousands rank alike whatever BLAS kernel runs.
    Only the best ``k`` per row are sorted: a block costs users x items, not a sort of that.
    """
    scores = users.astype(np.float64) @ items.astype(np.float64).T
    lengths = [len(s) for s in seen]
    if sum(lengths):
        scores[np.repeat(np.arange(len(users)), lengths), np.concatenate(seen)] = -np.inf
    k = min(k, scores.shape[1])
    if k == 0 or len(users) == 0:
        empty = np.empty(0, dtype="int64")
        return empty, empty, np.empty(0), empty
    kth = -np.partition(-scores, k - 1, axis=1)[:, [k - 1]]  # each row's k-th best score
    above, at = scores > kth, scores == kth
    room = k - above.sum(axis=1, keepdims=True)  # taken from the ties, lowest indices first
    chosen = (above | (at & (np.cumsum(at, axis=1) <= room))) & np.isfinite(scores)
    row, item = np.nonzero(chosen)  # row by row, items in index order
    score = scores[row, item]
    order = np.lexsort((item, -score, row))
    row, item, score = row[order], item[order], score[order]
    rank = np.arange(len(row)) - np.searchsorted(row, row) + 1
    return row, item, score, rank
