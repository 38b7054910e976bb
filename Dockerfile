# The scoring service with the committed default model; docker-compose.yml runs it beside Redis,
# Prometheus and Grafana.
#
#   docker build .                                                   CPU torch (the default)
#   docker build --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu126 .
#                                                                    CUDA torch; run with --gpus all
#
# BASE_IMAGE may name any image with Python 3.11 at /usr/local/bin (both stages use it, so the virtual
# environment built in one runs in the other); CUDA torch wheels bring their own CUDA libraries, so the
# slim image serves on a GPU host too, given the host's driver (NVIDIA Container Toolkit).
ARG BASE_IMAGE=python:3.11-slim

FROM ${BASE_IMAGE} AS build
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/venv/bin:$PATH
RUN python -m venv /opt/venv
# A C compiler for the feature kernel (app/features/_kernel.c), in this stage only: the runtime stage
# takes the compiled module.
RUN apt-get update \
 && apt-get install -y --no-install-recommends gcc libc6-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# Dependencies before the source, so that a code change reuses this layer. torch first, at the version
# pyproject.toml pins, from the index chosen above; the rest from PyPI then finds it installed.
COPY pyproject.toml setup.py README.md ./
COPY app/__init__.py app/__init__.py
COPY app/features/_kernel.c app/features/_kernel.c
RUN pip install --index-url "$TORCH_INDEX" "$(grep -o 'torch==[0-9.]*' pyproject.toml)" \
 && pip install . \
 && pip uninstall -y churn-service
COPY app app
RUN pip install --no-deps .

FROM ${BASE_IMAGE} AS runtime
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/venv/bin:$PATH \
    CHURN_HOST=0.0.0.0 \
    CHURN_PORT=8000
RUN useradd --system --uid 10001 --no-create-home churn
COPY --from=build /opt/venv /opt/venv
WORKDIR /srv
COPY model_store model_store
# With CHURN_WORKERS above 1 the workers share metrics through files under .data/prometheus.
RUN mkdir .data && chown churn .data
USER churn

EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ['CHURN_PORT'], timeout=2)"]
CMD ["python", "-m", "app", "serve"]
