# semcollab: `make app` (set up, fetch ml-100k, compute the run, open the dashboard) and `make test`.
SHELL := /bin/bash
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
RUNS ?= runs
DEFAULT_RUN := $(RUNS)/ml-100k
RUN ?= $(DEFAULT_RUN)
PORT ?= 8501
FIND_LINKS := $(if $(wildcard /opt/wheels),--find-links /opt/wheels,)

.PHONY: app run run-synthetic fetch test test-fast bench bench-ui bench-scale gpu-check sweep clean warm chromium

$(STAMP): pyproject.toml
	@command -v $(PY) >/dev/null || { echo "need $(PY) (Python 3.11)"; exit 1; }
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip wheel
	$(BIN)/pip install --quiet $(FIND_LINKS) -e '.[test]'
	$(BIN)/python -c "from analysis.projection import warm_umap; warm_umap()"
	touch $(STAMP)

fetch: $(STAMP)
	$(BIN)/semcollab fetch ml-100k

# The default run: real ml-100k; where it cannot be fetched, the synthetic dataset.
run: $(STAMP)
	@if $(BIN)/semcollab fetch ml-100k; then \
	  $(BIN)/semcollab run --dataset ml-100k --out $(DEFAULT_RUN); \
	else \
	  echo "ml-100k could not be fetched: computing the synthetic run instead"; \
	  $(BIN)/semcollab run --dataset synthetic --out $(RUNS)/synthetic; \
	fi

run-synthetic: $(STAMP)
	$(BIN)/semcollab run --dataset synthetic --out $(RUNS)/synthetic

sweep: $(STAMP)
	$(BIN)/semcollab sweep --dataset ml-100k --out $(RUNS)/ml-100k-sweep

# Opens $(RUN) (default: the ml-100k run, computed first when missing).
app: $(STAMP)
	@[ -f $(RUN)/manifest.json ] || $(MAKE) --no-print-directory run
	@target=$(RUN); [ -f $$target/manifest.json ] || target=$(RUNS)/synthetic; \
	echo "dashboard: http://127.0.0.1:$(PORT)  (run: $$target)"; \
	SEMCOLLAB_RUNS=$(RUNS) SEMCOLLAB_AUTO_SWEEP=1 $(BIN)/streamlit run app/main.py --server.address 127.0.0.1 --server.port $(PORT) \
	  --server.headless true --server.fileWatcherType none -- --run $$target

# Debian's Chromium for the browser tests (never a downloaded browser build).
chromium:
	@command -v chromium >/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then (apt-get update -qq && apt-get install -y -qq chromium) || echo "chromium could not be installed: browser tests will be skipped"; \
	  else echo "chromium missing and not root: browser tests will be skipped"; fi; }

test: $(STAMP) chromium
	$(BIN)/python -m pytest -q

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow and not browser"

bench: $(STAMP)
	$(BIN)/python benchmarks/bench.py
	$(MAKE) --no-print-directory bench-ui

# The dashboard in a real browser over runs/ml-100k: page loads, navigation, interactions, server CPU per view.
bench-ui: $(STAMP) chromium
	@[ -f $(RUN)/manifest.json ] || $(MAKE) --no-print-directory run
	$(BIN)/python benchmarks/bench_ui.py

# Complete synthetic runs at tiers S and M (TIERS="S M L" adds the 1M x 100k tier, over an hour):
# benchmarks/scale.md
TIERS ?= S M
bench-scale: $(STAMP)
	$(BIN)/python benchmarks/bench_scale.py $(TIERS)

# The GPU path against the CPU path on the tier-M shape (a few minutes on a CUDA machine; exits non-zero on
# any difference beyond float tolerance). Without a CUDA device: a dry run that says so and exits 0.
# GPU_ARGS="--write" saves the table to benchmarks/gpu.md.
gpu-check: $(STAMP)
	$(BIN)/python benchmarks/gpu_check.py $(GPU_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache tests/output
