# Two commands on a fresh machine with only Python:  make demo  |  make test
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)
JOURNAL ?= data/demo-journal
REPORTS ?= $(JOURNAL)-reports
RUNS ?= 2000
SEED ?= 7
PYTEST_ARGS ?=
# real files written by the source systems (see data/README.md), imported by make demo
SAMPLES := data/samples/agentstore/sample-data data/samples/eventsourcing/assistants.sqlite \
	data/samples/evennia-archive data/samples/otlp data/samples/chat/eval-runs.json

.PHONY: demo test lint typecheck bench clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev,notebooks,s3,dask]'
	@rm -f $(VENV)/.installed-* && touch $(STAMP)

## make demo: import the bundled real samples, add the synthetic fleet, print a summary
demo: $(STAMP)
	$(BIN)/journal import -j $(JOURNAL) $(SAMPLES)
	$(BIN)/journal demo -j $(JOURNAL) --runs $(RUNS) --seed $(SEED)
	$(BIN)/journal regrade -j $(JOURNAL) all || [ $$? -eq 3 ]
	$(BIN)/journal bisect -j $(JOURNAL) budget --from-findings || [ $$? -eq 3 ]
	@echo "--- the first failing tool call, walked back to the user message that started it:"
	@FAILED=$$($(BIN)/journal sql -j $(JOURNAL) causation/failed_tool_calls -p limit=1 --format csv | tail -n 1); \
	  $(BIN)/journal chain -j $(JOURNAL) "$${FAILED%%,*}" --up && \
	  CORRELATION=$$(echo "$$FAILED" | cut -d, -f2) && rm -rf $(JOURNAL)-compliance && \
	  $(BIN)/journal export-compliance -j $(JOURNAL) --correlation "$$CORRELATION" -o $(JOURNAL)-compliance && \
	  $(BIN)/journal verify-export $(JOURNAL)-compliance -j $(JOURNAL) && \
	  echo "compliance bundle for correlation $$CORRELATION: $(JOURNAL)-compliance/report.html"
	$(BIN)/journal reprice -j $(JOURNAL)
	$(BIN)/journal rollup top-runs -j $(JOURNAL) --limit 5 --cost repriced
	$(BIN)/journal report overview -j $(JOURNAL) -o $(REPORTS)/overview.html >/dev/null
	$(BIN)/journal report compliance -j $(JOURNAL) -o $(REPORTS)/compliance.html >/dev/null \
		-p correlation=$$($(BIN)/journal sql -j $(JOURNAL) explorer/correlations -p limit=1 --format csv | sed -n 2p | cut -d, -f1)
	@echo "reports (self-contained HTML, open offline): $(REPORTS)/overview.html $(REPORTS)/compliance.html"

## make test: ruff, mypy --strict, pytest (doctests included)
test: $(STAMP)
	$(BIN)/ruff check toolkit tests bench
	$(BIN)/mypy
	$(BIN)/python -m pytest -n 2 --doctest-modules toolkit tests $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check toolkit tests bench

typecheck: $(STAMP)
	$(BIN)/mypy

## make bench: the benchmarks of BENCHMARKS.md (minutes; not part of make test)
bench: $(STAMP)
	$(BIN)/python bench/bench_journal.py
	$(BIN)/python bench/bench_import_jsonl.py
	$(BIN)/python bench/bench_import_agentstore.py
	$(BIN)/python bench/bench_replay.py
	$(BIN)/python bench/bench_rollup.py
	$(BIN)/python bench/bench_regrade.py

clean:
	rm -rf $(VENV) $(JOURNAL) .mypy_cache .ruff_cache .pytest_cache
