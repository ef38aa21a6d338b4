"""Pure model code (Spark ML, scikit-learn), no Dagster: what the assets and benchmarks call."""
