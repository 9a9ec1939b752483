# One entry point: `make test`, `make preview STACK=…`, `make up STACK=…`.
# Every target creates the virtualenv (venv/, the one Pulumi.yaml names) when missing.

SHELL := /bin/bash
PYTHON ?= python3
VENV ?= venv
PY := $(VENV)/bin/python
STACK ?= local
DEV_REQUIREMENTS := requirements.txt requirements-dev.txt $(wildcard app/requirements-*.txt) \
	$(wildcard examples/*/requirements.txt)
# Stamps named by a hash of the requirements: an edited file reinstalls.
RUNTIME_STAMP := $(VENV)/.runtime-$(shell cat requirements.txt | sha256sum | cut -c1-12)
STAMP := $(VENV)/.installed-$(shell cat $(DEV_REQUIREMENTS) | sha256sum | cut -c1-12)

MODEL_DIR ?= build/models
MODEL_NAME ?= digits

.PHONY: help venv runtime pulumi-cli test lint typecheck unit docs render review preview up down smoke destroy stack train serve monitoring
help:
	@echo "make test                 lint, type-check and run every test (offline)"
	@echo "make preview STACK=local  pulumi preview for a stack (needs the Pulumi CLI)"
	@echo "make up                   the local stack on kind, from nothing to a served prediction (Docker, kind, kubectl, Pulumi CLI)"
	@echo "make smoke                call the local stack's model: its signature, a request of zeros, /predict if it has the plug-in"
	@echo "make down                 destroy the local stack, and the kind cluster and registry make up created"
	@echo "make monitoring           a Prometheus on the local cluster that scrapes the app, its UI on http://localhost:9090 (Helm)"
	@echo "make up STACK=dev         pulumi up for a cloud stack (needs the Pulumi CLI)"
	@echo "make destroy STACK=dev    pulumi destroy for a stack"
	@echo "make docs                 regenerate the README's config reference from Pulumi.yaml"
	@echo "make train                train the digits example on this machine and publish it into build/models (CPU is fine)"
	@echo "make serve                serve it on https://localhost:8080, CA in build/tls/ca.crt (set MLAPP_AUTH_PASSWORD first)"
	@echo "make serve PLAIN_HTTP=1   the same over plain HTTP, on a laptop only"
	@echo "make render STACK=local   render a stack offline into render/<stack>/ (objects, graph), validated"
	@echo "make review BASE=main     render every stack at BASE and here, print their diff and what pulumi up would replace"

# What `pulumi up` runs needs only requirements.txt; the tests need the rest too.
$(RUNTIME_STAMP): requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	rm -f $(VENV)/.runtime-* && touch $@

# torch first, from PyTorch's CPU-only index at the digits example's pin (its Dockerfile's install with
# TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu): torch==2.13.0 from PyPI is, on Linux x86_64,
# the CUDA 13 build and several GB of nvidia-* wheels that the tests and `make train` never use. The
# install after it keeps that torch (2.13.0+cpu meets the pin) and brings its dependencies at their pins.
TORCH_CPU_INDEX := https://download.pytorch.org/whl/cpu
$(STAMP): $(RUNTIME_STAMP) $(DEV_REQUIREMENTS)
	$(PY) -m pip install --quiet --disable-pip-version-check --only-binary=:all: --no-deps \
		--index-url $(TORCH_CPU_INDEX) "$$(grep -E '^torch==' examples/digits/requirements.txt)"
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	rm -f $(VENV)/.installed-* && touch $@

venv: $(STAMP)
runtime: $(RUNTIME_STAMP)

# The policy pack's own venv, as `pulumi preview --policy-pack policy` creates it.
POLICY_VENV := policy/venv
POLICY_STAMP := $(POLICY_VENV)/.installed-$(shell sha256sum policy/requirements.txt | cut -c1-12)
$(POLICY_STAMP): policy/requirements.txt
	test -x $(POLICY_VENV)/bin/python || $(PYTHON) -m venv $(POLICY_VENV)
	$(POLICY_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r policy/requirements.txt
	rm -f $(POLICY_VENV)/.installed-* && touch $@

lint: venv
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .

# The examples' trainers too: examples/digits/digits is a package (on mypy_path); the others are
# standalone scripts in directories whose names are no package's, so they are passed as files.
typecheck: venv
	$(VENV)/bin/mypy mlstack components stack tools tests __main__.py app/mlapp policy bench examples/digits/digits
	for script in $(wildcard examples/*/train.py); do $(VENV)/bin/mypy "$$script" || exit 1; done

# Checkov's own venv (requirements-checkov.txt says why its own); the tests find it through MLSTACK_CHECKOV.
CHECKOV_VENV := .venv-checkov
CHECKOV_STAMP := $(CHECKOV_VENV)/.installed-$(shell sha256sum requirements-checkov.txt | cut -c1-12)
$(CHECKOV_STAMP): requirements-checkov.txt
	test -x $(CHECKOV_VENV)/bin/python || $(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-checkov.txt
	rm -f $(CHECKOV_VENV)/.installed-* && touch $@

unit: venv $(POLICY_STAMP) $(CHECKOV_STAMP)
	MLSTACK_POLICY_PYTHON=$(POLICY_VENV)/bin/python MLSTACK_CHECKOV=$(CHECKOV_VENV)/bin/checkov $(PY) -m pytest

test: lint typecheck unit

# The app on this machine, no cluster: the digits example's trainer writes its outputs into a run
# directory, as the training Job's does, and the publisher the server image runs publishes them.
RUN_DIR ?= build/runs/$(MODEL_NAME)/local
train: venv
	PYTHONPATH=examples/digits $(PY) -m digits.train --output-dir $(RUN_DIR) \
		--model-record $(MODEL_DIR)/$(MODEL_NAME)/local/metadata.json \
		--epochs 10 --batch-size 32 --learning-rate 0.003 --gate 'accuracy>=0.9' --seed 0
	PYTHONPATH=app $(PY) -m mlapp.publish --run $(RUN_DIR) --model-dir $(MODEL_DIR) --model-name $(MODEL_NAME) \
		--version local --gate 'accuracy>=0.9'

# HTTPS with a throwaway CA in build/tls (curl --cacert build/tls/ca.crt), kept from one start to the next while it
# is valid, so clients of a server started earlier still verify it; PLAIN_HTTP=1 serves plain HTTP instead.
TLS_DIR ?= build/tls
serve: venv
	@test -n "$$MLAPP_AUTH_PASSWORD" || { echo "make serve: export MLAPP_AUTH_PASSWORD (and MLAPP_AUTH_USERNAME, default mlstack) first"; exit 2; }
ifeq ($(PLAIN_HTTP),1)
	MLAPP_PLAIN_HTTP=1 MLAPP_MODEL_DIR=$(MODEL_DIR) MLAPP_MODEL_NAME=$(MODEL_NAME) MLAPP_MODEL_VERSION=local \
		MLAPP_AUTH_USERNAME=$${MLAPP_AUTH_USERNAME:-mlstack} PYTHONPATH=app $(PY) -m mlapp.serve
else
	$(PY) -m tools.devcert $(TLS_DIR)
	MLAPP_TLS_CERT_FILE=$(TLS_DIR)/tls.crt MLAPP_TLS_KEY_FILE=$(TLS_DIR)/tls.key \
		MLAPP_MODEL_DIR=$(MODEL_DIR) MLAPP_MODEL_NAME=$(MODEL_NAME) MLAPP_MODEL_VERSION=local \
		MLAPP_AUTH_USERNAME=$${MLAPP_AUTH_USERNAME:-mlstack} PYTHONPATH=app $(PY) -m mlapp.serve
endif

docs: venv
	$(PY) -m tools.config_doc --write README.md

# Offline, no CLI or credentials: every Kubernetes object (secrets redacted) and the resource graph.
render: venv
	$(PY) -m tools.render --stack $(STACK)

# Offline too: every shipped stack rendered at BASE (in a temporary git worktree) and at the working tree,
# their diff, and the resources a preview would replace (tools/replacements.py says on whose word).
BASE ?= HEAD
review: venv
	$(PY) -m tools.review --base $(BASE)

# Checked before the virtualenv is made: without the CLI, installing ~800 MB first only delays the refusal.
PULUMI_GET := https://www.pulumi.com/docs/iac/download-install/
pulumi-cli:
	@command -v pulumi >/dev/null || { echo "make: the Pulumi CLI (pulumi) is not on PATH; install it from $(PULUMI_GET), then run make again" >&2; exit 2; }

stack: pulumi-cli
	@$(MAKE) --no-print-directory runtime
	pulumi stack select --create $(STACK)

preview: stack
	pulumi preview --stack $(STACK) --diff

# The local stack (the default): tools/localup.py checks Docker, kind, kubectl and the Pulumi CLI
# before anything is made, creates the kind cluster and registry when missing, keeps the state
# and passphrase in .mlstack/ unless you have your own, deploys, and calls the served model.
up:
ifeq ($(STACK),local)
	$(PYTHON) -m tools.localup preflight
	$(MAKE) runtime
	$(PY) -m tools.localup up
else
	$(MAKE) stack STACK=$(STACK)
	pulumi up --stack $(STACK)
endif

# The local stack: pulumi destroy, then the kind cluster and registry `make up` created, and only those.
down: pulumi-cli
ifeq ($(STACK),local)
	$(MAKE) runtime
	$(PY) -m tools.localup down
else
	$(MAKE) destroy STACK=$(STACK)
endif

# The served model, called through the stack's port-forward: its metadata (GET /v2/models/<modelName>),
# one request of zeros in its own shapes, and /predict with a sample picture when it has the image-classifier plug-in.
smoke:
	$(PYTHON) -m tools.localup smoke

destroy: stack
	pulumi destroy --stack $(STACK)

# A local cluster has no collector: the Prometheus community chart, whose kubernetes-service-endpoints and
# kubernetes-pods jobs discover the app's annotated metrics Service and trainer pod (docs/monitoring.md),
# in the namespace the NetworkPolicies admit (mlstack:localMetricsNamespace), then its UI.
METRICS_NAMESPACE ?= monitoring
PROMETHEUS_CHART_VERSION ?= 27.19.0
monitoring:
	@command -v helm >/dev/null || { echo "make monitoring: Helm is not installed (https://helm.sh/docs/intro/install/)"; exit 2; }
	helm upgrade --install prometheus prometheus --repo https://prometheus-community.github.io/helm-charts \
		--version $(PROMETHEUS_CHART_VERSION) --namespace $(METRICS_NAMESPACE) --create-namespace --wait \
		--set alertmanager.enabled=false --set prometheus-pushgateway.enabled=false
	kubectl --namespace $(METRICS_NAMESPACE) port-forward service/prometheus-server 9090:80
