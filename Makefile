# mixproc — every target sets itself up: uv is installed with pip when missing,
# and `uv run` syncs the virtual environment from pyproject.toml before running.
SHELL := /bin/bash
UV = $$(command -v uv || echo python3 -m uv)
RUN = $(UV) run --quiet
export PYTHONUNBUFFERED := 1
# Byte-compile the installed packages once at install time: where PYTHONDONTWRITEBYTECODE is
# set (CI machines), every interpreter would otherwise re-compile scikit-learn, JAX, ArviZ...
# from source on import (about 14 s for `import mixtures` instead of about 3 s).
export UV_COMPILE_BYTECODE := 1
PYTEST_WORKERS ?= 2

.PHONY: uv sync test lint demo bench notebooks docs clean

uv:
	@command -v uv >/dev/null 2>&1 || python3 -m uv --version >/dev/null 2>&1 \
		|| python3 -m pip install --quiet uv

# --inexact keeps the optional `bench` extra when it was installed by `make bench`.
sync: uv
	@$(UV) sync --quiet --inexact --extra rl --compile-bytecode

lint: sync
	$(RUN) ruff check mixtures gp gmm tests benchmarks
	$(RUN) ruff format --check mixtures gp gmm tests benchmarks

# Unit tests, doctests of the packages and the executed notebooks, in one pytest run.
# Notebooks come first so that their long items start early and both workers finish together.
# XLA programs compiled by one test process are kept on disk for the others (JAX's
# persistent compilation cache): the notebooks, README examples and tests share many.
# --dist loadfile keeps each test file on one worker: its module fixtures (fitted models)
# are built once and its compiled programs are reused in memory (about a sixth less CPU than
# spreading the tests of a file over both workers).
test: sync
	$(RUN) ruff check mixtures gp gmm tests benchmarks
	JAX_COMPILATION_CACHE_DIR=$(CURDIR)/.cache/jax \
		$(RUN) pytest -n $(PYTEST_WORKERS) --dist loadfile --doctest-modules --nbmake \
		--nbmake-timeout=600 \
		notebooks tests mixtures gp gmm

demo: sync
	$(RUN) mixproc demo --output mixproc-demo

bench: uv
	@$(UV) sync --quiet --inexact --extra rl --extra bench
	@for script in benchmarks/*.py; do \
		echo "== $$script"; $(RUN) python $$script || exit 1; \
	done

# The documentation site (API reference, tutorials), warnings as errors: docs/_build/html.
docs: sync
	$(RUN) python -m sphinx -E -W --keep-going -b html docs docs/_build/html

# Re-execute the notebooks in place (outputs are committed so users see them rendered).
notebooks: sync
	$(RUN) python notebooks/_build/execute.py notebooks/*.ipynb

clean:
	rm -rf .venv .cache .pytest_cache .ruff_cache mixproc-demo docs/_build docs/generated
