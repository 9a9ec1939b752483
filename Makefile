# One entry point: `make test`, `make preview STACK=…`, `make up STACK=…`.
# Every target creates the virtualenv (venv/, the one Pulumi.yaml names) when missing.

SHELL := /bin/bash
PYTHON ?= python3
VENV ?= venv
PY := $(VENV)/bin/python
STACK ?= local
STAMP := $(VENV)/.installed-$(shell cat requirements.txt requirements-dev.txt | sha256sum | cut -c1-12)

.PHONY: help venv test lint typecheck unit docs render preview up destroy stack
help:
	@echo "make test                 lint, type-check and run every test (offline)"
	@echo "make preview STACK=local  pulumi preview for a stack (needs the Pulumi CLI)"
	@echo "make up STACK=local       pulumi up for a stack (needs the Pulumi CLI)"
	@echo "make destroy STACK=local  pulumi destroy for a stack"
	@echo "make docs                 regenerate the README's config reference from Pulumi.yaml"
	@echo "make render STACK=local   render a stack offline into render/<stack>/ (objects, graph), validated"

$(STAMP): requirements.txt requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	rm -f $(VENV)/.installed-* && touch $@

venv: $(STAMP)

lint: venv
	$(VENV)/bin/ruff check .

typecheck: venv
	$(VENV)/bin/mypy components tools tests __main__.py policy bench

unit: venv
	$(PY) -m pytest

test: lint typecheck unit

docs: venv
	$(PY) -m tools.config_doc --write README.md

# Offline, no CLI or credentials: every Kubernetes object (secrets redacted) and the resource graph.
render: venv
	$(PY) -m tools.render --stack $(STACK)

stack: venv
	@command -v pulumi >/dev/null || { echo "make: the Pulumi CLI is not installed (https://www.pulumi.com/docs/install/)"; exit 2; }
	pulumi stack select --create $(STACK)

preview: stack
	pulumi preview --stack $(STACK) --diff

up: stack
	pulumi up --stack $(STACK)

destroy: stack
	pulumi destroy --stack $(STACK)
