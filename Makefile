# Two commands set everything up on a fresh machine (see README):
#   make demo   -- create .venv, install, run the main job end to end on a built-in dataset (no download)
#   make test   -- create .venv if needed, install with dev and docs extras, run the test suite (incl. the strict
#                  docs build and every README/docs code example: tests/test_docs.py)
#   make wheel-check      -- build the wheel, install it (not editable) in a fresh venv, run the CLI, the toy demo and
#                            README's first example from outside the checkout (.ci/wheel_check.sh; CI runs it)
#   make container-check  -- build the Dockerfile's image with Podman and run the toy demo in it
#                            (.ci/container_check.sh: installs Podman and makes a Debian base image when missing)
# The install step pins torch/torchvision (a local copy installs in about a minute); pyproject.toml keeps
# loose ranges for users.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH_PIN ?= torch==2.14.1 torchvision==0.29.1
DEMO_OUT ?= demo_out
PYTEST_ARGS ?=

.PHONY: install demo demo-conditional test lint bench docs clean wheel-check container-check

$(VENV)/.installed: pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(TORCH_PIN)
	$(PY) -m pip install --quiet -e ".[dev,docs]"
# k-diffusion is a test-only reference (tests/kdiffusion.py loads its sampling.py); --no-deps: its own
# dependencies (wandb, clip, kornia, ...) are not needed for that module
	$(PY) -m pip install --quiet --no-deps k-diffusion==0.1.1.post1
	touch $@

install: $(VENV)/.installed

demo: install
	$(PY) -m scoresde demo --out $(DEMO_OUT)

demo-conditional: install
	$(PY) -m scoresde demo --conditional --out $(DEMO_OUT)_conditional

test: install
	$(PY) -m ruff check src tests benchmarks
	$(PY) -m pytest -n 2 $(PYTEST_ARGS)

lint: install
	$(PY) -m ruff check src tests benchmarks

wheel-check:
	PYTHON=$(PYTHON) TORCH_PIN="$(TORCH_PIN)" bash .ci/wheel_check.sh

container-check:
	TORCH_PIN="$(TORCH_PIN)" bash .ci/container_check.sh all

bench: install
	$(PY) benchmarks/samplers.py

# the documentation site (also built with --strict by tests/test_docs.py, so `make test` fails on a broken link)
docs: install
	$(PY) -m mkdocs build --strict --site-dir site

clean:
	rm -rf $(VENV) $(DEMO_OUT) site .pytest_cache .ruff_cache
