# Two set-up-and-go commands (see README): `make demo` and `make test`. Each sets up what it needs
# on a fresh machine: a virtualenv in .venv, the Python packages, and (for tests) the pinned CDK CLI.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
export JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION := 1
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 20
export PATH := $(abspath $(VENV))/bin:$(PATH)

.PHONY: demo test test-fast synth lint clean bench

$(VENV)/.runtime: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e .
	touch $@

$(VENV)/.dev: pyproject.toml $(VENV)/.runtime
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

## demo: set up, then run the sample job against a built-in origin on 127.0.0.1 (no AWS account)
demo: $(VENV)/.runtime
	$(VENV)/bin/fanfetch demo

## test: set up (venv, dev packages, CDK CLI), lint, check the layering contract, run the whole suite, then a real `cdk synth`
test: $(VENV)/.dev node_modules/.installed
	$(VENV)/bin/ruff check fanfetch lambdas stacks tests bench app.py
	$(VENV)/bin/lint-imports --no-cache
	$(PY) -m pytest -n 2 -q
	$(MAKE) --no-print-directory synth

# `cdk synth` offline and without touching any AWS endpoint: no credentials, no instance metadata
# lookup (169.254.169.254), no telemetry, no version check.
SYNTH_ENV := env -u AWS_ACCESS_KEY_ID -u AWS_SECRET_ACCESS_KEY -u AWS_SESSION_TOKEN -u AWS_PROFILE \
	-u AWS_ENDPOINT_URL AWS_EC2_METADATA_DISABLED=true AWS_CONFIG_FILE=/dev/null \
	AWS_SHARED_CREDENTIALS_FILE=/dev/null CDK_DISABLE_CLI_TELEMETRY=true CDK_DISABLE_VERSION_CHECK=true

## synth: the real CloudFormation template (bundles both Lambda assets locally, no Docker)
synth: $(VENV)/.dev node_modules/.installed
	$(SYNTH_ENV) npx cdk synth --no-notices -q > /dev/null && echo "cdk synth: ok (cdk.out/)"

## test-fast: the suite without slow end-to-end tests
test-fast: $(VENV)/.dev
	$(PY) -m pytest -n 2 -q -m "not slow"

## bench: set up (venv; nginx + echo module + aria2 via apt when missing) and run every benchmark (~5 min)
bench: $(VENV)/.dev
	bench/run.sh

lint: $(VENV)/.dev
	$(VENV)/bin/ruff check fanfetch lambdas stacks tests bench app.py
	$(VENV)/bin/lint-imports --no-cache

clean:
	rm -rf $(VENV) node_modules cdk.out fanfetch-demo-output .pytest_cache
