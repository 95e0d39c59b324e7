# One command each on a fresh clone: `make demo`, `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
LOCK := .ci/constraints.txt
FMNIST := /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: setup demo lint test test-all bench clean system-deps

setup: $(STAMP) system-deps

# The exact tested stack: pyproject.toml holds the ranges, the lock file the versions (docs/install.md).
# Regenerate the lock from a venv that passed the tests: $(BIN)/python .ci/lock.py
$(STAMP): pyproject.toml $(LOCK)
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q -c $(LOCK) --upgrade pip
	$(BIN)/python -m pip install -q -c $(LOCK) -e ".[all,dev]"
	touch $(STAMP)

# Debian's Fashion-MNIST (the benchmark dataset) and OpenSSH (the tests start a real sshd on
# 127.0.0.1), installed when missing and apt is usable; otherwise those tests skip and say why.
system-deps:
	@missing=""; \
	[ -f $(FMNIST) ] || missing="$$missing dataset-fashion-mnist"; \
	[ -x /usr/sbin/sshd ] || missing="$$missing openssh-server"; \
	command -v ssh >/dev/null || missing="$$missing openssh-client"; \
	if [ -n "$$missing" ]; then \
	  if command -v apt-get >/dev/null && { [ "$$(id -u)" = 0 ] || sudo -n true 2>/dev/null; }; then \
	    echo "installing:$$missing"; \
	    $(SUDO) apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing >/dev/null; \
	  else echo "note: apt is not usable; missing:$$missing (see README)"; fi; \
	fi

demo: setup
	$(BIN)/compress pipeline examples/demo.yaml --out runs/demo

# ruff (lint + format check) and mypy on the core packages; configured in pyproject.toml
LINT_PATHS := compress export tests benchmarks examples hardware_profiles
lint: setup
	$(BIN)/ruff check $(LINT_PATHS)
	$(BIN)/ruff format --check $(LINT_PATHS)
	$(BIN)/mypy

test: setup lint
	$(BIN)/python -m pytest -q -m "not slow and not tensorrt" -p no:cacheprovider

test-all: setup
	$(BIN)/python -m pytest -q -p no:cacheprovider

bench: setup
	$(BIN)/python benchmarks/run_all.py

clean:
	rm -rf $(VENV) runs .pytest_cache
