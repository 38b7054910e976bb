# The scoring service with the committed default model. Redis runs beside it (see docker-compose.yml).
FROM python:3.11-slim AS runtime

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    CHURN_HOST=0.0.0.0 \
    CHURN_PORT=8000

WORKDIR /srv
# Dependencies first, so that code changes do not reinstall them.
COPY pyproject.toml README.md ./
COPY app/__init__.py app/__init__.py
RUN pip install . && pip uninstall -y churn-service

COPY app app
COPY model_store model_store
RUN pip install --no-deps . && useradd --system --uid 10001 churn
USER churn

EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=2s --retries=3 \
  CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=1)"
CMD ["python", "-m", "app", "serve"]
