# The two commands a new user needs: `make demo` and `make test`. Both set up everything first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export RECSYS_HOME ?= $(CURDIR)/.recsys
export DAGSTER_HOME ?= $(RECSYS_HOME)/dagster

# Sample data for the demo: sizes a laptop materialises in a few minutes.
DEMO_ARGS ?= --customers 2000 --days 120 --seed 42

.PHONY: setup demo test test-unit test-e2e test-cluster test-servers chromium postgresql dev mlflow serve serve-recommendations serve-churn bench lint clean maintain

setup: $(BIN)/.installed

$(BIN)/.installed: pyproject.toml setup.py
	@java -version >/dev/null 2>&1 || { echo "Java 17 or newer is required by PySpark: install it (Debian/Ubuntu: apt-get install openjdk-17-jre-headless) and retry."; exit 1; }
	@v=$$(java -version 2>&1 | sed -n 's/.* version "\([0-9]*\).*/\1/p'); [ "$${v:-0}" -ge 17 ] || { echo "Java 17 or newer is required by PySpark (found $${v:-none}): install openjdk-17-jre-headless and retry."; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	@# Delta Lake's Spark jars, from Maven Central into Spark's Ivy cache (~/.ivy2.5.2), once.
	$(BIN)/python -m recsys_assets.resources.spark
	touch $@

$(DAGSTER_HOME)/dagster.yaml: dagster.yaml
	mkdir -p $(DAGSTER_HOME)
	cp dagster.yaml $@

demo: setup $(DAGSTER_HOME)/dagster.yaml
	$(BIN)/recsys-generate --out $(RECSYS_HOME)/landing $(DEMO_ARGS)
	$(BIN)/dg launch --assets '*'
	@echo "Every asset is materialised. Delta tables: $(RECSYS_HOME)/lakehouse/<layer>/<table>;"
	@echo "MLflow store: $(RECSYS_HOME)/mlflow (browse it with 'make mlflow'); UI: 'make dev'."

# `dg check defs` first: it loads the code location in seconds, before any Spark starts.
test: setup $(DAGSTER_HOME)/dagster.yaml
	$(BIN)/dg check defs
	$(BIN)/ruff check .
	$(BIN)/pytest

# Pure functions on hand-made data, definitions, sensors, the registry: about a minute.
test-unit: setup
	$(BIN)/pytest recsys_assets_tests/unit

# End to end, as a user meets it: `dagster dev`, a CSV drop, the sensor's run, the UI in
# Debian's headless chromium (installed here if missing). A few minutes.
test-e2e: setup chromium
	$(BIN)/pytest recsys_assets_tests/e2e

# Scale-out, on loopback: PostgreSQL (Debian's, installed here if missing), an MLflow server on
# it, a Spark standalone cluster, a Spark Connect server and an S3-compatible store (moto's
# server, a dev extra); the same graph on each. A few minutes.
test-cluster: setup postgresql
	@# Hadoop's S3A connector for the tables on the store (13 MB from Maven Central, once).
	$(BIN)/python -m recsys_assets.resources.spark --s3
	$(BIN)/pytest recsys_assets_tests/cluster

# Debian packages the two suites above need, installed if missing.
chromium:
	command -v chromium >/dev/null || (apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium)
postgresql:
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || (apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y postgresql)

dev: setup $(DAGSTER_HOME)/dagster.yaml
	$(BIN)/dg dev -h 127.0.0.1 -p 3000

mlflow: setup
	mkdir -p $(RECSYS_HOME)/mlflow
	$(BIN)/mlflow ui --backend-store-uri sqlite:///$(RECSYS_HOME)/mlflow/mlflow.db --host 127.0.0.1 --port 5000

# MLflow's scoring servers (POST /invocations) for both champions, on loopback; Ctrl-C stops both.
RECS_PORT ?= 5001
CHURN_PORT ?= 5002
SERVE = PATH="$(abspath $(BIN)):$$PATH" \
	MLFLOW_TRACKING_URI="$${MLFLOW_TRACKING_URI:-sqlite:///$(RECSYS_HOME)/mlflow/mlflow.db}" \
	$(BIN)/mlflow models serve --env-manager local -h 127.0.0.1 -w 1

serve: setup
	$(MAKE) -j2 serve-recommendations serve-churn

serve-recommendations:
	$(SERVE) -m models:/als_recommender@champion -p $(RECS_PORT)

serve-churn:
	$(SERVE) -m models:/churn_scorer@champion -p $(CHURN_PORT)

bench: setup
	$(BIN)/python benchmarks/serving.py
	$(BIN)/python benchmarks/als_fit.py --repeats 2
	$(BIN)/python benchmarks/incremental.py --orders 1000000
	$(BIN)/python benchmarks/overhead.py --orders 100000
	$(BIN)/python benchmarks/scale.py --sizes 10000 100000 1000000

# OPTIMIZE and VACUUM every Delta table (also a weekly schedule, off by default, in `make dev`).
maintain: setup $(DAGSTER_HOME)/dagster.yaml
	$(BIN)/dg launch --job maintain_tables

lint: setup
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf $(RECSYS_HOME) .pytest_cache
