# Exchange — developer commands. `make help` lists them.
SHELL := /usr/bin/env bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

VENV := .venv
PY := $(VENV)/bin/python
export PYTHONPATH := $(CURDIR)/hack:$(PYTHONPATH)

.PHONY: help
help: ## list the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

.PHONY: deps
deps: ## install uv (pinned, cached) and sync .venv to requirements.lock
	@bash hack/install/python.sh

.PHONY: lock
lock: ## re-resolve requirements.lock from pyproject.toml
	@bash hack/lock.sh

.PHONY: engines
engines: ## install every engine (Postgres, Kafka, s3proxy, Jaeger, etcd, kube-apiserver, kubectl, helm) into the cache
	@bash hack/install/all.sh

.PHONY: lint
lint: deps ## ruff, mypy and the import-linter boundaries
	$(VENV)/bin/ruff check services operator hack tests
	$(VENV)/bin/ruff format --check services operator hack tests
	$(VENV)/bin/mypy services operator hack
	$(VENV)/bin/lint-imports

.PHONY: unit
unit: deps ## unit tests (no processes)
	$(PY) -m pytest tests/unit -q

.PHONY: integration
integration: deps engines ## integration tests against the real engines
	$(PY) -m pytest tests/integration -q

.PHONY: test
test: deps engines lint ## what CI runs: install everything, lint, unit, integration and hostile-input tests
	$(PY) -m pytest tests/unit tests/integration tests/security -q

.PHONY: security
security: deps engines ## the hostile-input suite (tests/security): probes of issue 26 and schemathesis, production mode
	$(PY) -m pytest tests/security -q

.PHONY: dev
dev: deps engines ## start the engines and every service locally (state and logs in .dev/)
	@$(PY) -m exchange_devtools dev-up

.PHONY: down
down: ## stop everything `make dev` started
	@$(PY) -m exchange_devtools dev-down

.PHONY: kube-up
kube-up: deps engines ## start the local single-node cluster (root): writes .dev/kubeconfig and .dev/kube.env
	@$(PY) -m exchange_devtools kube-up

.PHONY: kube-down
kube-down: ## stop the local node and undo its changes to the host (state in .dev/kube is kept)
	@$(PY) -m exchange_devtools kube-down

.PHONY: images
images: deps ## build every image (services, operator, Postgres, Kafka, S3) and load it into the local node
	@$(PY) -m exchange_devtools images

.PHONY: kube-operator
kube-operator: deps ## install or upgrade the operator in-cluster from charts/exchange-operator (after kube-up and images)
	@$(PY) -m exchange_devtools kube-operator

.PHONY: engines-report
engines-report: deps engines ## time-to-ready and idle RSS of each engine
	@$(PY) -m exchange_devtools engines-report

.PHONY: operator
operator: deps ## run the operator locally against $$KUBECONFIG (e.g. the one `make kube-up` writes)
	@KUBECONFIG=$${KUBECONFIG:-$(CURDIR)/.dev/kubeconfig} $(PY) -m exchange_operator

.PHONY: crd
crd: deps ## regenerate the CRD (manifests/crd and the chart) from operator/exchange_operator/spec.py
	@bash hack/gen-crd

.PHONY: monitoring
monitoring: deps ## regenerate the Prometheus rules and Grafana dashboards in charts/exchange-operator/files
	@$(PY) -m exchange_devtools monitoring

.PHONY: rbac
rbac: ## regenerate manifests/rbac/ from the chart
	@bash hack/gen-rbac

.PHONY: kind-up
kind-up: ## kind cluster `exchange` with ingress-nginx on localhost:80/443 (needs Docker and kind)
	@bash hack/kind-up

.PHONY: kind-down
kind-down: ## delete the kind cluster
	@bash hack/kind-down

.PHONY: kind-images
kind-images: ## build exchange:dev and exchange-operator:dev with Docker and load them into kind
	docker build --target services -t exchange:dev .
	docker build --target operator -t exchange-operator:dev .
	kind load docker-image --name exchange exchange:dev exchange-operator:dev

.PHONY: e2e
e2e: deps engines ## kind end-to-end: images, chart, sample, curl through the ingress (needs Docker and kind)
	$(PY) -m pytest -m e2e tests/e2e/kind -q -rs

.PHONY: bench-ingest bench-gzip bench-auth bench-tokenize bench-normalize bench-e2e bench-query bench-operator bench-kubeclient bench-cluster bench-platform
bench-ingest: deps engines ## ingest throughput/latency vs the Postgres and S3 floors
	@bash hack/bench/ingest
bench-gzip: deps ## inflating many-member gzip bodies: linear now, vs the former quadratic loop
	@bash hack/bench/gzip
bench-auth: deps ## bearer-token verification per request: every time, cached, vs the signature check alone
	@bash hack/bench/auth
bench-tokenize: deps ## tokenizer records/s vs openlinktoken and the bare hashing limit
	@bash hack/bench/tokenize
bench-normalize: deps engines ## normalizer sustained records/s and consumer lag
	@bash hack/bench/normalize
bench-e2e: deps engines ## bulk upload → all queryable (make dev topology, fsync on), vs ingest alone and normalizer alone
	@bash hack/bench/e2e $(ARGS)
bench-query: deps engines ## query p50/p99 with 1M canonical rows
	@bash hack/bench/query
bench-operator: deps engines ## CR apply → children present, 1 and 20 pipelines
	@bash hack/bench/operator
bench-kubeclient: deps engines ## the operator's aiohttp client vs lightkube: apply and reconcile (ADR 0004 amendment 1)
	@bash hack/bench/kubeclient
bench-cluster: deps engines ## local node: kube-up cold/warm, make images, a 3-replica Deployment, RSS (stops the node)
	@bash hack/bench/cluster
bench-platform: deps engines ## local sample from kubectl apply to Ready and first record, cold/warm; ingress vs make dev
	@bash hack/bench/platform
