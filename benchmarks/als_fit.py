"""Benchmark: Spark ML ALS (implicit) fit time vs. the `implicit` library on the same data.

Usage:
    .venv/bin/python benchmarks/als_fit.py                 # 100k and 1M interactions
    .venv/bin/python benchmarks/als_fit.py --sizes 20000   # quick run

For each size, ONE deterministic synthetic implicit-feedback matrix is built (latent-factor
structure + item popularity, weights = log1p(qty)), then both libraries fit it with the same
rank / iterations / regularization / alpha. Only the fit itself is timed: the Spark DataFrame
is cached and counted first, and both libraries get a warm-up fit on a tiny matrix.

Spark settings (see benchmarks/README.md for the measurements behind them):
local[*], UI off, spark.sql.shuffle.partitions=4, ALS numUserBlocks = numItemBlocks = cores,
netlib's pure-Java BLAS (native OpenBLAS is slower at rank 20), OPENBLAS_NUM_THREADS=1.
Exits 1 when it prints FAIL (the ratio at the target size over its bound).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

# Spark runs one task per core; a multithreaded BLAS inside each task oversubscribes the
# cores. Must be set before numpy/scipy load OpenBLAS and before the Spark JVM is started
# (the JVM inherits this process's environment).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import scipy.sparse as sp  # noqa: E402

TARGET_RATIO = 5.0
TARGET_SIZE = 1_000_000

OPENBLAS_SONAME = "libopenblas.so.0"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument(
        "--sizes",
        type=int,
        nargs="+",
        default=[100_000, 1_000_000],
        help="number of interactions (non-zeros) per benchmark matrix",
    )
    p.add_argument("--rank", type=int, default=20)
    p.add_argument("--iters", type=int, default=10)
    p.add_argument("--reg", type=float, default=0.1)
    p.add_argument("--alpha", type=float, default=1.0)
    p.add_argument(
        "--users",
        type=int,
        default=None,
        help="number of users (default: size // 20, i.e. ~20 interactions/user)",
    )
    p.add_argument("--items", type=int, default=2000)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--master", default="local[*]")
    p.add_argument(
        "--blocks",
        type=int,
        default=None,
        help="ALS numUserBlocks = numItemBlocks (default: Spark's core count)",
    )
    p.add_argument("--shuffle-partitions", type=int, default=4)
    p.add_argument(
        "--native-blas",
        choices=["off", "on", "system"],
        default="off",
        help="off (default, fastest at rank 20): netlib's pure-Java VectorBLAS/F2j; "
        "on: OpenBLAS via netlib JNI (needs Debian libopenblas0-pthread); "
        "system: no setting, netlib dlopen()s libblas.so.3 if present",
    )
    p.add_argument(
        "--repeats",
        type=int,
        default=3,
        help="fits per library per size; the best time is reported",
    )
    p.add_argument("--skip-implicit", action="store_true")
    p.add_argument("--skip-spark", action="store_true")
    return p.parse_args(argv)


# --------------------------------------------------------------------------- data


def make_interactions(
    n_nnz: int, n_users: int, n_items: int, seed: int, latent_dim: int = 8
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Deterministic synthetic implicit feedback with a latent-factor structure.

    Each user picks k_u distinct items (k_u heavy-tailed, sum(k_u) == n_nnz) by Gumbel-top-k
    sampling from softmax(U @ V.T + log item popularity); quantity ~ 1 + Poisson(exp(affinity)).
    Returns (user, item, weight) with weight = log1p(qty) as float32.
    """
    rng = np.random.default_rng(seed)
    n_items = int(n_items)
    n_users = int(min(n_users, n_nnz))
    if n_nnz > n_users * n_items:
        raise ValueError(f"{n_nnz} interactions do not fit in {n_users}x{n_items}")

    user_f = rng.normal(0.0, 1.0, (n_users, latent_dim)).astype(np.float32)
    item_f = rng.normal(0.0, 1.0, (n_items, latent_dim)).astype(np.float32)
    user_f /= np.sqrt(latent_dim) / 1.5
    item_f /= np.sqrt(latent_dim) / 1.5
    pop = np.log(1.0 / np.arange(1, n_items + 1) ** 0.8).astype(np.float32)  # Zipf-like
    pop = pop[rng.permutation(n_items)]

    # Per-user activity: heavy-tailed, at least 1, at most n_items, summing to n_nnz.
    w = rng.lognormal(0.0, 1.0, n_users)
    k = 1 + rng.multinomial(n_nnz - n_users, w / w.sum())
    overflow = np.maximum(k - n_items, 0).sum()
    k = np.minimum(k, n_items)
    while overflow:  # hand any overflow to users with room (only for tiny/dense configs)
        room = np.flatnonzero(k < n_items)
        take = min(int(overflow), room.size)
        k[room[:take]] += 1
        overflow -= take

    users, items, weights = [], [], []
    chunk = max(1, 4_000_000 // n_items)
    for lo in range(0, n_users, chunk):
        hi = min(lo + chunk, n_users)
        aff = user_f[lo:hi] @ item_f.T  # (chunk, n_items)
        logits = aff + pop
        gumbel = -np.log(-np.log(rng.random(logits.shape, dtype=np.float32) + 1e-12) + 1e-12)
        order = np.argsort(-(logits + gumbel), axis=1)
        kk = k[lo:hi]
        mask = np.arange(n_items)[None, :] < kk[:, None]
        rows = np.repeat(np.arange(lo, hi, dtype=np.int32), kk)
        cols = order[mask].astype(np.int32)  # row-major: matches np.repeat order
        lam = np.exp(np.clip(aff[rows - lo, cols], -5, 3))
        qty = 1 + rng.poisson(lam)
        users.append(rows)
        items.append(cols)
        weights.append(np.log1p(qty).astype(np.float32))
    return np.concatenate(users), np.concatenate(items), np.concatenate(weights)


# --------------------------------------------------------------------------- spark


def native_blas_java_options(mode: str) -> str:
    """JVM system properties selecting netlib's BLAS/LAPACK backend for Spark ML.

    Measured here (README_als_fit.md): at rank 20 ALS calls tiny dspr/daxpy/dppsv kernels, and
    the JNI round trip to OpenBLAS costs more than Spark 4's JDK Vector-API BLAS, so "off" is
    the fastest; native only pays off from rank ~50.
    """
    if mode == "off":
        return (
            "-Ddev.ludovic.netlib.blas.allowNative=false "
            "-Ddev.ludovic.netlib.lapack.allowNative=false"
        )
    if mode == "on":
        # The JNI shim dlopen()s `nativeLib` (default libblas.so.3 / liblapack.so.3, which
        # update-alternatives may point at the slow reference BLAS). Pin OpenBLAS: it ships
        # BLAS and LAPACK in one library.
        return (
            f"-Ddev.ludovic.netlib.blas.nativeLib={OPENBLAS_SONAME} "
            f"-Ddev.ludovic.netlib.lapack.nativeLib={OPENBLAS_SONAME}"
        )
    return ""


def make_spark(master: str, shuffle_partitions: int, native_blas: str):
    from pyspark.sql import SparkSession

    builder = (
        SparkSession.builder.master(master)
        .appName("als_fit_benchmark")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.shuffle.partitions", str(shuffle_partitions))
        .config("spark.driver.memory", "4g")
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
    )
    # spark.driver.extraJavaOptions only works before the driver JVM starts: the builder
    # passes it to spark-submit when pyspark launches the JVM (local mode).
    java_opts = native_blas_java_options(native_blas)
    if java_opts:
        builder = builder.config("spark.driver.extraJavaOptions", java_opts)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    return spark


def spark_blas_backends(spark) -> tuple[str, str]:
    """Class names of the BLAS / LAPACK implementations Spark ML's ALS will use.

    Spark ML takes NativeBLAS/NativeLAPACK.getInstance() (JNIBLAS/JNILAPACK) when netlib's
    JNI shim can dlopen the native library, else the pure-Java fallback.
    """
    from py4j.protocol import Py4JJavaError

    netlib = spark.sparkContext._jvm.dev.ludovic.netlib
    names = []
    for native, java in (
        (netlib.blas.NativeBLAS, netlib.blas.JavaBLAS),
        (netlib.lapack.NativeLAPACK, netlib.lapack.JavaLAPACK),
    ):
        try:
            inst = native.getInstance()
        except Py4JJavaError:
            inst = java.getInstance()
        names.append(inst.getClass().getSimpleName())
    return names[0], names[1]


def spark_df(spark, users, items, weights):
    import pyarrow as pa

    table = pa.table({"user": users, "item": items, "rating": weights})
    n_parts = spark.sparkContext.defaultParallelism
    df = spark.createDataFrame(table.to_pandas()).repartition(n_parts)
    df = df.cache()
    df.count()
    return df


class Timer:
    """Wall-clock and CPU seconds of a block of work.

    CPU time is taken from `cpu_seconds()` (all threads of the measured process); on a shared,
    busy machine it is a steadier signal than wall time.
    """

    def __init__(self, cpu_seconds):
        self._cpu_seconds = cpu_seconds

    def __enter__(self) -> Timer:
        self._w0, self._c0 = time.perf_counter(), self._cpu_seconds()
        return self

    def __exit__(self, *exc) -> None:
        self.wall = time.perf_counter() - self._w0
        self.cpu = self._cpu_seconds() - self._c0


def jvm_cpu_seconds_fn(spark):
    """CPU seconds (user+sys, all threads) of the local-mode driver JVM, read from /proc."""
    proc = getattr(spark.sparkContext._gateway, "proc", None)
    path = f"/proc/{proc.pid}/stat" if proc is not None else None
    tick = os.sysconf("SC_CLK_TCK")

    def cpu_seconds() -> float:
        if path is None or not os.path.exists(path):
            return float("nan")
        with open(path) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / tick  # utime, stime

    return cpu_seconds


def fit_spark(spark, df, args, blocks: int, cpu_seconds) -> Timer:
    """Our ALS: the estimator of recsys_assets' training Pipeline, on this benchmark's columns."""
    from recsys_assets.assets.als import ALSConfig, als_pipeline

    config = ALSConfig(
        rank=args.rank,
        max_iter=args.iters,
        reg_param=args.reg,
        alpha=args.alpha,
        seed=args.seed,
        num_blocks=blocks,
    )
    als = als_pipeline(config).getStages()[-1]
    als.setUserCol("user").setItemCol("item").setRatingCol("rating")
    with Timer(cpu_seconds) as t:
        model = als.fit(df)  # ALS.train materialises both factor RDDs before returning
    model.userFactors.unpersist()
    model.itemFactors.unpersist()
    return t


# --------------------------------------------------------------------------- implicit


def fit_implicit(csr: sp.csr_matrix, args, threads: int) -> Timer:
    from implicit.cpu.als import AlternatingLeastSquares

    model = AlternatingLeastSquares(
        factors=args.rank,
        regularization=args.reg,
        alpha=args.alpha,
        iterations=args.iters,
        num_threads=threads,
        random_state=args.seed,
    )
    with Timer(time.process_time) as t:
        model.fit(csr, show_progress=False)
    return t


# --------------------------------------------------------------------------- main


def best(timers: list[Timer]) -> Timer | None:
    return min(timers, key=lambda t: t.wall) if timers else None


def fmt(t: Timer | None) -> str:
    return "skipped" if t is None else f"{t.wall:7.2f}s (cpu {t.cpu:6.2f}s)"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    spark = None
    cores = os.cpu_count() or 1
    jvm_cpu = None
    if not args.skip_spark:
        spark = make_spark(args.master, args.shuffle_partitions, args.native_blas)
        cores = spark.sparkContext.defaultParallelism
        jvm_cpu = jvm_cpu_seconds_fn(spark)
        blas, lapack = spark_blas_backends(spark)
        print(
            f"spark {spark.version} master={args.master} cores={cores} "
            f"BLAS={blas} LAPACK={lapack} "
            f"OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS')}"
        )
    blocks = args.blocks or cores
    load = os.getloadavg()[0]
    print(
        f"rank={args.rank} iters={args.iters} reg={args.reg} alpha={args.alpha} "
        f"blocks={blocks} shuffle_partitions={args.shuffle_partitions} "
        f"implicit_threads={cores} repeats={args.repeats} (best wall time reported) "
        f"load1={load:.1f}",
        flush=True,
    )
    if load > cores:
        print(
            f"WARNING: load average {load:.1f} > {cores} cores: wall times are inflated by "
            "other processes; compare the cpu figures",
            flush=True,
        )

    # Warm-up on a tiny matrix: JVM start-up/JIT and thread-pool creation are not timed.
    wu, wi, ww = make_interactions(5_000, 250, 200, seed=args.seed + 1)
    if spark is not None:
        wdf = spark_df(spark, wu, wi, ww)
        fit_spark(spark, wdf, args, blocks, jvm_cpu)
        wdf.unpersist()
    if not args.skip_implicit:
        fit_implicit(sp.csr_matrix((ww, (wu, wi)), shape=(250, 200)), args, cores)

    failed = False
    for size in args.sizes:
        n_users = args.users or max(1, size // 20)
        u, i, w = make_interactions(size, n_users, args.items, seed=args.seed)
        t_spark = t_impl = None
        if spark is not None:
            df = spark_df(spark, u, i, w)
            t_spark = best(
                [fit_spark(spark, df, args, blocks, jvm_cpu) for _ in range(args.repeats)]
            )
            df.unpersist()
        if not args.skip_implicit:
            csr = sp.csr_matrix((w, (u, i)), shape=(n_users, args.items), dtype=np.float32)
            t_impl = best([fit_implicit(csr, args, cores) for _ in range(args.repeats)])
        line = (
            f"size={size:>9,d} (users={n_users} items={args.items} nnz={len(u)})  "
            f"spark={fmt(t_spark)}  implicit={fmt(t_impl)}"
        )
        if t_spark is not None and t_impl is not None:
            ratio = t_spark.wall / t_impl.wall
            line += f"  ratio spark/implicit={ratio:5.1f}x  "
            if size == TARGET_SIZE:
                verdict = "PASS" if ratio <= TARGET_RATIO else "FAIL"
                failed |= verdict == "FAIL"
                line += f"target <={TARGET_RATIO:g}x: {verdict}"
            else:  # Spark's fixed cost per job dominates small fits
                line += f"(the target <={TARGET_RATIO:g}x is set at {TARGET_SIZE:,d})"
        print(line, flush=True)

    if spark is not None:
        spark.stop()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
