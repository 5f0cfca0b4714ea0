# RecModel: `make demo` shows it working end to end, `make test` runs every test.
SHELL := /bin/bash
PY := .venv/bin/python
VENV_STAMP := .venv/.installed
# The benchmark's serving peers (Ray Serve, PyTriton) in a venv of their own: see bench/peers/requirements.txt.
PEERS_STAMP := .venv-peers/.installed
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: venv peers demo test test-fast lint format bench bench-quick bench-operator operator cluster-build cluster-up cluster-down images images-local crd manifests clean

venv: $(VENV_STAMP)

$(VENV_STAMP): constraints.txt requirements-dev.txt operator/pyproject.toml model_handlers/pyproject.toml
	@test -x .venv/bin/python || python3 -m venv .venv
	.venv/bin/pip install -q -c constraints.txt -r requirements-dev.txt -e ./operator -e './model_handlers[torchserve]'
	@touch $@

peers: $(PEERS_STAMP)

$(PEERS_STAMP): $(VENV_STAMP) bench/peers/requirements.txt
	@test -x .venv-peers/bin/python || python3 -m venv .venv-peers
	.venv-peers/bin/pip install -q -r bench/peers/requirements.txt
	$(PY) -c 'import site; print(f"import site; site.addsitedir({site.getsitepackages()[0]!r})")' \
		> "$$(.venv-peers/bin/python -c 'import site; print(site.getsitepackages()[0])')/zz-recmodel-venv.pth"
	@touch $@

# The Go builds need only the standard library, so they do not wait for the venv: `make test`
# runs both at once (on a cold machine the venv's downloads overlap the compiling).
cluster-build:
	python3 -m devcluster.build

cluster-up: venv
	$(PY) -m devcluster up

cluster-down: venv
	$(PY) -m devcluster down

# The operator, model-server and storage-initializer images, from their Dockerfiles (buildah),
# pushed to the local registry (docs/images.md).
images: venv cluster-build
	$(PY) -m devcluster images

# The same builds without the push (the registry is a Go-built binary): `make test` runs them
# beside the Go builds, and the tests' push then finds them built.
images-local: venv
	$(PY) -m devcluster images --no-push

lint: venv
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .
	.venv/bin/mypy operator/recmodel_operator model_handlers/recmodel_handlers devcluster release bench demo
	.venv/bin/lint-imports

format: venv
	.venv/bin/ruff format .
	.venv/bin/ruff check --fix .

# Every test: unit, serving (real model-server processes), integration and e2e (local control plane).
# On a cold machine the Go builds, the venv, the images and the lint overlap (each waits on
# the network or the disk part of the time).
test:
	$(MAKE) --no-print-directory -j3 venv cluster-build images-local lint
	$(PY) -m pytest tests

test-fast: venv
	$(PY) -m pytest tests/unit

crd: venv
	$(PY) -m recmodel_operator.crd > charts/recmodel-operator/crds/recmodels.recmodel.dev.yaml
	cp charts/recmodel-operator/crds/recmodels.recmodel.dev.yaml manifests/01-crd.yaml

manifests: venv cluster-build
	$(PY) -m release.manifests

operator: venv cluster-up
	.devcluster/bin/kubectl --kubeconfig .devcluster/kubeconfig apply --server-side -f manifests/01-crd.yaml
	KUBECONFIG=$(CURDIR)/.devcluster/kubeconfig RECMODEL_HEALTH_ENDPOINT=http://127.0.0.1:8080/healthz RECMODEL_METRICS_HOST=127.0.0.1 \
		.venv/bin/recmodel-operator

demo: venv cluster-build
	$(PY) -m demo $(DEMO_ARGS)

bench: venv peers cluster-build
	$(PY) -m bench

bench-quick: venv peers cluster-build
	$(PY) -m bench --quick

bench-operator: venv cluster-build
	$(PY) -m bench --operator-only

clean: cluster-down
	rm -rf .devcluster .demo bench/results .venv-peers
