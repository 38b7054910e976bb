# The only commands a newcomer needs: make run, make test, make lint, make train, make bench, make bench-serve.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: install run redis-down test lint train train-cdnow bench bench-serve chaos soak prometheus-check clean

install: $(STAMP)

$(STAMP): pyproject.toml setup.py app/features/_kernel.c
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

# Serve on http://127.0.0.1:8000 with the committed model; starts a local Redis unless CHURN_REDIS_URL is set,
# makes a development API key and an id secret once (.data/dev-key, .data/id-secret), appends the audit log
# to .data/audit.jsonl and opens /docs without a key.
run: install
	$(PY) -m app redis-up
	$(PY) -m app dev-key
	$(PY) -m app dev-secret
	CHURN_API_KEYS_FILE=$${CHURN_API_KEYS_FILE:-.data/api_keys.json} \
	CHURN_ID_SECRET_FILE=$${CHURN_ID_SECRET_FILE:-.data/id-secret} \
	CHURN_AUDIT_LOG=$${CHURN_AUDIT_LOG:-.data/audit.jsonl} \
	CHURN_WARNINGS_ENABLED=$${CHURN_WARNINGS_ENABLED:-true} \
	CHURN_PUBLIC_ENDPOINTS=$${CHURN_PUBLIC_ENDPOINTS:-'["docs"]'} $(PY) -m app serve

# Stops the Redis that `make run` started (or the one at CHURN_REDIS_URL).
redis-down: install
	$(PY) -m app redis-down

test: install
	$(PY) -m pytest -q

lint: install
	$(VENV)/bin/ruff check app tests bench
	$(VENV)/bin/ruff format --check app tests bench
	$(VENV)/bin/mypy

# Rebuilds the committed default bundle from the seeded simulator (deterministic).
train: install
	$(PY) -m app train --preset sim --out model_store --set-current

# The CDNOW standard protocol; the report lands in out/cdnow/.
train-cdnow: install
	$(PY) -m app train --preset cdnow --out out/cdnow

bench: install
	$(PY) -m bench.offline_features
	$(PY) -m bench.online_store

# Our service beside Mosec, a tutorial FastAPI service and the ceilings, all started here (about 10
# minutes; ARGS=--quick for a 4-minute smoke run). Figures land in bench/results/serve.json.
bench-serve: install $(VENV)/.bench-installed
	@command -v wrk >/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -q && apt-get install -y -q wrk; \
	  else echo "bench-serve needs wrk: run 'sudo apt-get install wrk' (Debian/Ubuntu), then retry" >&2; exit 1; fi; }
	$(PY) -m bench.serve $(ARGS)

# Faults under a load of event batches (Redis killed and restarted from its AOF, Redis paused, the
# service restarted); every acknowledged event must be found exactly once afterwards (about 30 s).
chaos: install
	$(PY) -m bench.chaos

# Half the measured /score capacity of mixed traffic for ARGS=--minutes N (default 10): no errors, and
# the service's memory may not grow by 10% after the first minute. Needs wrk, like bench-serve.
soak: install $(VENV)/.bench-installed
	@command -v wrk >/dev/null || { echo "soak needs wrk: run 'sudo apt-get install wrk', then retry" >&2; exit 1; }
	$(PY) -m bench.soak $(ARGS)

# The project's Prometheus configuration and alert rules against the running service (about 30 s): a real
# Prometheus scrapes it on loopback until a /score p99 and an events rate query answer. Needs Debian's
# `prometheus` package.
prometheus-check: install
	@command -v prometheus >/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -q && apt-get install -y -q prometheus; \
	  else echo "prometheus-check needs prometheus: run 'sudo apt-get install prometheus', then retry" >&2; exit 1; fi; }
	$(PY) -m bench.prometheus_e2e

$(VENV)/.bench-installed: pyproject.toml $(STAMP)
	$(PY) -m pip install -q -e '.[bench]'
	touch $@

clean:
	rm -rf $(VENV) .data out .pytest_cache .mypy_cache .ruff_cache build app/features/*.so
