# syntax=docker/dockerfile:1.7
# One image for every Exchange service (ingest, tokenizer, normalizer, query) and the `exchange` CLI.
# The operator chooses the service per Deployment (`exchange serve <service>`).
#
#   docker build -t exchange:dev .
#
# Runs as UID 10001 with a read-only root filesystem: the only writable path it needs is /tmp
# (an emptyDir in the cluster). Bytecode is compiled at build time so Python never writes .pyc.
ARG PYTHON_IMAGE=python:3.11.14-slim-trixie
# The builder stage's base; keep its default equal to PYTHON_IMAGE. A build that reaches PyPI
# through a TLS-intercepting proxy passes an image trusting the proxy's CA here, so that CA stays
# out of the runtime stage (see hack/images/python-build/Dockerfile).
ARG PYTHON_BUILDER_IMAGE=python:3.11.14-slim-trixie

# ---- builder: the locked runtime dependencies and the project wheel, in /opt/venv -------------------
FROM ${PYTHON_BUILDER_IMAGE} AS builder
# Build backend for the project wheel; it stays in this stage and never ships.
ARG HATCHLING_VERSION=1.33.0
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
RUN python -m venv /opt/venv

# Dependencies first, so editing code does not reinstall them. requirements.lock also holds the dev
# extra; runtime_lock.py keeps the runtime closure, hashes and all, and pip refuses anything unhashed.
COPY pyproject.toml requirements.lock ./
COPY hack/docker/runtime_lock.py hack/docker/runtime_lock.py
RUN python hack/docker/runtime_lock.py pyproject.toml requirements.lock > /tmp/runtime.lock \
 && /opt/venv/bin/pip install --require-hashes --no-deps --only-binary=:all: -r /tmp/runtime.lock

# The project itself: one wheel (services, operator package, contracts as exchange/_contracts).
COPY services/ services/
COPY operator/ operator/
COPY contracts/ contracts/
RUN pip install "hatchling==${HATCHLING_VERSION}" \
 && pip wheel --no-deps --no-build-isolation --wheel-dir /tmp/wheels . \
 && /opt/venv/bin/pip install --no-deps /tmp/wheels/*.whl \
 && /opt/venv/bin/python -m compileall -q /opt/venv/lib

# ---- runtime --------------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="exchange" \
      org.opencontainers.image.description="Exchange services: ingest, tokenizer, normalizer, query" \
      org.opencontainers.image.licenses="Apache-2.0"
# A fixed numeric UID/GID, so `runAsNonRoot` can be verified by the kubelet without /etc/passwd.
RUN groupadd --system --gid 10001 exchange \
 && useradd --system --uid 10001 --gid 10001 --home-dir /tmp --no-create-home \
      --shell /usr/sbin/nologin exchange
COPY --from=builder /opt/venv /opt/venv
# services/ and contracts/ also as plain files, first on PYTHONPATH: Tilt's live_update syncs
# services/ here. Root-owned by default so the service cannot rewrite its own code; the Tiltfile
# builds with APP_OWNER=10001:10001 (dev only). The contracts sit both at /app/contracts and where
# the wheel puts them (exchange/_contracts), so either way of finding them works.
ARG APP_OWNER=0:0
COPY --chown=${APP_OWNER} services/ /app/services/
COPY --chown=${APP_OWNER} contracts/ /app/contracts/
COPY --chown=${APP_OWNER} contracts/ /app/services/exchange/_contracts/
RUN python -m compileall -q /app/services
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONPATH=/app/services \
    EXCHANGE_CONTRACTS_DIR=/app/contracts \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    TMPDIR=/tmp
WORKDIR /app
USER 10001:10001
ENTRYPOINT ["exchange"]
CMD ["--help"]
