# Two set-up commands: `make app` and `make test`. Each creates .venv if missing and installs what it needs.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PORT ?= 8501

.PHONY: chromium app test test-fast fuzz bench demo-checkpoints zoo-checkpoints clean-venv

$(STAMP): requirements.txt requirements-test.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements-test.txt
	$(PY) -m pip install -q --no-deps -e .
	touch $(STAMP)

app: $(STAMP)
	$(VENV)/bin/streamlit run app/streamlit_app.py --server.port $(PORT) --server.headless true

# Browser tests need Debian's chromium (never `playwright install`); installed here when we are root.
chromium:
	@command -v chromium >/dev/null 2>&1 || [ -x /usr/bin/chromium ] || \
	  { if [ "$$(id -u)" = 0 ]; then (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null); \
	    else echo "chromium missing and not root: browser tests will be skipped"; fi; }

test: $(STAMP) chromium
	$(PY) -m pytest -q -p no:cacheprovider

test-fast: $(STAMP)
	$(PY) -m pytest -q -x -m "not browser and not slow"

# The fuzz tests (tests/test_fuzz_*.py) with a large, randomly explored budget; `make test` runs them small.
FUZZ_EXAMPLES ?= 2000
fuzz: $(STAMP)
	HFNET_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(PY) -m pytest -q -p no:cacheprovider tests/test_fuzz_*.py

bench: $(STAMP)
	for b in benchmarks/bench_*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

demo-checkpoints: $(STAMP)
	$(PY) -m hfnet_core.cli train-demo --out checkpoints
	$(PY) -m hfnet_core.analysis.precompute checkpoints/hf_tsn_demo.test.npz checkpoints/tsn_demo.test.npz --prune

# TSM and GSM, and the multi-task TSN / HF-TSN (verb / noun / action, Table III), on the demo pair's
# recipe and budget (resumable, runs/zoo/work)
zoo-checkpoints: $(STAMP)
	$(PY) -m hfnet_core.cli train-demo --models tsm,gsm,mt,hf_mt --out checkpoints --work runs/zoo/work \
		--table3 benchmarks/results/table3_synth.json
	$(PY) -m hfnet_core.analysis.precompute checkpoints/tsm_demo.test.npz checkpoints/gsm_demo.test.npz --no-pairs
	$(PY) -m hfnet_core.analysis.precompute checkpoints/mt_hf_tsn_demo.test.npz checkpoints/mt_tsn_demo.test.npz

clean-venv:
	rm -rf $(VENV)
