# syntax=docker/dockerfile:1.7
# Both Exchange images, from the repository root (the context), one target each:
#
#   docker build --target services -t exchange:dev .            ingest, tokenizer, normalizer, query
#                                                               and the `exchange` CLI (`exchange serve <service>`)
#   docker build --target operator -t exchange-operator:dev .   the kopf operator (`python -m exchange_operator`)
#
# Each installs the shared dependencies plus its own extra from pyproject.toml (`services` or
# `operator`), hash-checked from the one requirements.lock. Both run as UID 10001 with a read-only
# root filesystem: the only writable path they need is /tmp (an emptyDir in the cluster). Bytecode
# is compiled at build time so Python never writes .pyc.
ARG PYTHON_IMAGE=python:3.11.14-slim-trixie
# The builder stages' base; keep its default equal to PYTHON_IMAGE. A build that reaches PyPI
# through a TLS-intercepting proxy passes an image trusting the proxy's CA here, so that CA stays
# out of the runtime stages (see hack/images/python-build/Dockerfile).
ARG PYTHON_BUILDER_IMAGE=python:3.11.14-slim-trixie

# ---- builder: an empty venv and the lock, shared by both images ----------------------------------------
FROM ${PYTHON_BUILDER_IMAGE} AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
RUN python -m venv /opt/venv
# Dependencies before code, so editing code does not reinstall them. runtime_lock.py prints the base
# dependencies plus one extra's closure, hashes and all; pip refuses anything unhashed.
COPY pyproject.toml requirements.lock ./
COPY hack/docker/runtime_lock.py hack/docker/runtime_lock.py

# The operator's stages come before the services' ones, so `--target operator` needs no services/ in
# the context (Tilt's operator build leaves it out), even with a builder that runs every earlier stage.

# ---- the operator's venv: its locked dependencies only (its code goes to /app/operator) -----------------
FROM builder AS operator-venv
RUN python hack/docker/runtime_lock.py --extra operator pyproject.toml requirements.lock > /tmp/runtime.lock \
 && /opt/venv/bin/pip install --require-hashes --no-deps --only-binary=:all: -r /tmp/runtime.lock \
 && /opt/venv/bin/python -m compileall -q /opt/venv/lib

# ---- runtime base: the user and the environment both images share ---------------------------------------
FROM ${PYTHON_IMAGE} AS runtime
# A fixed numeric UID/GID, so `runAsNonRoot` can be verified by the kubelet without /etc/passwd.
RUN groupadd --system --gid 10001 exchange \
 && useradd --system --uid 10001 --gid 10001 --home-dir /tmp --no-create-home \
      --shell /usr/sbin/nologin exchange
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    TMPDIR=/tmp
WORKDIR /app

# ---- operator: `python -m exchange_operator` ----------------------------------------------------------------
FROM runtime AS operator
LABEL org.opencontainers.image.title="exchange-operator" \
      org.opencontainers.image.description="kopf operator: one ExchangePipeline -> the whole platform" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=operator-venv /opt/venv /opt/venv
COPY operator/exchange_operator/ /app/operator/exchange_operator/
RUN python -m compileall -q /app/operator
# Configured by EXCHANGE_OPERATOR_* variables (operator/exchange_operator/settings.py); the Helm
# chart sets them. kopf's probe endpoint (--liveness) listens on 8080.
ENV PYTHONPATH=/app/operator \
    EXCHANGE_OPERATOR_LIVENESS=http://0.0.0.0:8080/healthz
WORKDIR /tmp
USER 10001:10001
EXPOSE 8080
ENTRYPOINT ["python", "-m", "exchange_operator"]

# ---- the services' venv: their locked dependencies and the project wheel ------------------------------
FROM builder AS services-venv
# Build backend for the project wheel; it stays in this stage and never ships.
ARG HATCHLING_VERSION=1.33.0
RUN python hack/docker/runtime_lock.py --extra services pyproject.toml requirements.lock > /tmp/runtime.lock \
 && /opt/venv/bin/pip install --require-hashes --no-deps --only-binary=:all: -r /tmp/runtime.lock
# The wheel gives the `exchange` command and the contracts as exchange/_contracts.
COPY services/ services/
COPY operator/ operator/
COPY contracts/ contracts/
RUN pip install "hatchling==${HATCHLING_VERSION}" \
 && pip wheel --no-deps --no-build-isolation --wheel-dir /tmp/wheels . \
 && /opt/venv/bin/pip install --no-deps /tmp/wheels/*.whl \
 && /opt/venv/bin/python -m compileall -q /opt/venv/lib

# ---- services: `exchange serve <service>`; the default target, so it comes last -----------------------------
FROM runtime AS services
LABEL org.opencontainers.image.title="exchange" \
      org.opencontainers.image.description="Exchange services: ingest, tokenizer, normalizer, query" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=services-venv /opt/venv /opt/venv
# services/ and contracts/ also as plain files, first on PYTHONPATH: Tilt's live_update syncs
# services/ here. Root-owned by default so the service cannot rewrite its own code; the Tiltfile
# builds with APP_OWNER=10001:10001 (dev only). The contracts sit both at /app/contracts and where
# the wheel puts them (exchange/_contracts), so either way of finding them works.
ARG APP_OWNER=0:0
COPY --chown=${APP_OWNER} services/ /app/services/
COPY --chown=${APP_OWNER} contracts/ /app/contracts/
COPY --chown=${APP_OWNER} contracts/ /app/services/exchange/_contracts/
RUN python -m compileall -q /app/services
ENV PYTHONPATH=/app/services \
    EXCHANGE_CONTRACTS_DIR=/app/contracts
USER 10001:10001
ENTRYPOINT ["exchange"]
CMD ["--help"]
