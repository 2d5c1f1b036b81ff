# The two commands a new user needs: `make demo` and `make test` (ruff, mypy and the complete
# suite, which CI runs). `make check` is the quick tier for a contributor's inner loop: ruff,
# then every test not marked slow.
# Both create (or reuse) a local virtual environment in .venv and install what they need.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.fastmix-installed

.PHONY: demo test check lint bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,audit]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/fastmix demo
	@echo
	@echo "The fastmix command is installed in .venv. To use it, run"
	@echo "    source .venv/bin/activate      (then: fastmix --help)"
	@echo "or call it as .venv/bin/fastmix, or install it elsewhere with: pip install -e ."

test: $(STAMP)
	$(BIN)/ruff check fastmix tests bench
	$(BIN)/python -m mypy fastmix
	$(BIN)/python -m pytest

check: $(STAMP)
	$(BIN)/ruff check fastmix tests bench
	$(BIN)/python -m pytest -q -m "not slow"

bench: $(STAMP)
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) demo .pytest_cache .benchmarks .hypothesis
