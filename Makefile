# gridgov — `make run` brings the platform up with demo data; `make test` runs every test.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.DEFAULT_GOAL := help
.PHONY: help run test unit integration lint typecheck bench bench-rebuild fuzz schema clean tools
.PHONY: deploy-check bench-scale

help: ## this list
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@$(PYTHON) -c "import sys; assert sys.version_info[:2] >= (3, 11), sys.version" || { echo "needs Python 3.11"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

tools: ## Debian tools the tests use: kcat (a Kafka client we did not write), chromium + CJK fonts
	@missing=""; command -v kcat >/dev/null || missing="$$missing kcat"; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	dpkg -s fonts-noto-cjk >/dev/null 2>&1 || missing="$$missing fonts-noto-cjk"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else echo "missing:$$missing (apt-get install$$missing)"; exit 1; fi; fi
	@missing=""; command -v promtool >/dev/null || missing="$$missing prometheus"; \
	command -v docker-compose >/dev/null || missing="$$missing docker-compose"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	  else echo "missing:$$missing (apt-get install$$missing)"; exit 1; fi; fi

run: $(STAMP) ## the whole platform on the embedded stack, with demo data
	$(BIN)/gridgov dev up --demo

test: $(STAMP) tools lint typecheck deploy-check ## every test: unit, then integration and e2e on the real broker and PostgreSQL
	$(BIN)/pytest -p no:cacheprovider --durations=15

unit: $(STAMP) ## the fast pure tests only
	$(BIN)/pytest -p no:cacheprovider tests/unit

lint: $(STAMP) ## ruff
	$(BIN)/ruff check events projections services tests

typecheck: $(STAMP) ## mypy, strict on events/ and projections/
	$(BIN)/mypy events projections

chaos: $(STAMP) ## the fault-injection suite, long (GRIDGOV_CHAOS_SCALE=10); make test runs it short
	GRIDGOV_CHAOS_SCALE=$${GRIDGOV_CHAOS_SCALE:-10} $(BIN)/pytest -p no:cacheprovider \
	  --timeout=3600 tests/integration/test_faults.py

bench: $(STAMP) ## the benchmark table (not part of make test); appends to BENCHMARKS.md
	$(BIN)/python -m tests.bench

fuzz: $(STAMP) ## schemathesis with many more examples per operation than make test's
	GRIDGOV_FUZZ_EXAMPLES=300 $(BIN)/pytest -p no:cacheprovider tests/e2e/test_fuzz.py

bench-rebuild: $(STAMP) ## rebuild rate for a million events, beside raw consume and COPY
	$(BIN)/python -m tests.bench.rebuild

bench-scale: $(STAMP) ## projection throughput with 1, 2 and 3 workers, and per partition
	$(BIN)/python -m tests.bench.scale_out

deploy-check: $(STAMP) tools ## deploy/ without a container engine: compose, k8s schemas, promtool
	@env=$$(mktemp) && sh deploy/compose/secrets.sh > $$env && \
	docker-compose -f deploy/compose/compose.yaml --env-file $$env config -q; rc=$$?; rm -f $$env; \
	[ $$rc = 0 ] && echo "deploy/compose/compose.yaml: valid" || exit $$rc
	$(BIN)/kubernetes-validate --strict --quiet --no-warn deploy/k8s/*.yaml
	promtool check config --syntax-only deploy/prometheus/prometheus.yml deploy/prometheus/prometheus-k8s.yml
	promtool check rules deploy/prometheus/rules/*.yml
	cd deploy/prometheus/tests && promtool test rules alerts.yml

schema: $(STAMP) ## export the event JSON Schemas into schemas/
	$(BIN)/gridgov schema export schemas

clean: ## remove the venv and the dev stack's data
	rm -rf $(VENV) .gridgov
