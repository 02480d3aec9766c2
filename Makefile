# gridgov — `make run` brings the platform up with demo data; `make test` runs every test.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.DEFAULT_GOAL := help
.PHONY: help run test unit integration lint typecheck bench bench-rebuild fuzz schema clean tools

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

run: $(STAMP) ## the whole platform on the embedded stack, with demo data
	$(BIN)/gridgov dev up --demo

test: $(STAMP) tools lint typecheck ## every test: unit, then integration and e2e on the real broker and PostgreSQL
	$(BIN)/pytest -p no:cacheprovider

unit: $(STAMP) ## the fast pure tests only
	$(BIN)/pytest -p no:cacheprovider tests/unit

lint: $(STAMP) ## ruff
	$(BIN)/ruff check events projections services tests

typecheck: $(STAMP) ## mypy, strict on events/ and projections/
	$(BIN)/mypy events projections

bench: $(STAMP) ## the benchmark table (not part of make test); appends to BENCHMARKS.md
	$(BIN)/python -m tests.bench

fuzz: $(STAMP) ## schemathesis with many more examples per operation than make test's
	GRIDGOV_FUZZ_EXAMPLES=300 $(BIN)/pytest -p no:cacheprovider tests/e2e/test_fuzz.py

bench-rebuild: $(STAMP) ## rebuild rate for a million events, beside raw consume and COPY
	$(BIN)/python -m tests.bench.rebuild

schema: $(STAMP) ## export the event JSON Schemas into schemas/
	$(BIN)/gridgov schema export schemas

clean: ## remove the venv and the dev stack's data
	rm -rf $(VENV) .gridgov
