# circuitflow: `make demo` sets up and runs the main job; `make test` sets up and runs the tests.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed

export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export DO_NOT_TRACK := 1

.PHONY: setup browser test demo lint format clean

setup: $(STAMP) browser

# The viewer's browser tests drive Debian's chromium (Playwright never downloads a browser here).
browser:
	@command -v chromium >/dev/null 2>&1 || { apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

# torch first, pinned: an unpinned torch would pull a multi-GB CUDA build. Then the project with
# its test extra, against the exact versions in constraints.txt.
$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet torch==2.13.0
	$(PIP) install --quiet -c constraints.txt -e '.[test]'
	touch $(STAMP)

test: $(STAMP) browser
	$(PY) -m pytest -q -n auto --maxprocesses 4 --dist loadfile

DEMO_PROMPT := The capital of the state containing Dallas is

demo: $(STAMP)
	$(VENV)/bin/circuitflow attribute "$(DEMO_PROMPT)"
	@echo
	@echo "Next steps:"
	@echo "  see the graph in your browser (live re-pruning, pinning, plots):"
	@echo "    .venv/bin/circuitflow view <run_id>"
	@echo "  write it for circuit-tracer's or Neuronpedia's frontend:"
	@echo "    .venv/bin/circuitflow export <run_id> --graph_file_dir graphs/"
	@echo "  query every run in the catalog with SQL:"
	@echo "    .venv/bin/circuitflow query \"SELECT run_id, prompt, n_nodes_kept, replacement_score FROM runs\""
	@echo "  re-prune at another threshold (only prune and export recompute):"
	@echo "    .venv/bin/circuitflow attribute \"$(DEMO_PROMPT)\" --node-threshold 0.6"
	@echo "  sweep many prompts on Dask:"
	@echo "    .venv/bin/circuitflow sweep configs/sweeps/capitals.yaml --workers 2"

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
