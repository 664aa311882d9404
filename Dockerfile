FROM python:3.12-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    WATCHER_LISTEN=0.0.0.0:9187
WORKDIR /app

COPY pyproject.toml README.md ./
COPY watcher ./watcher
RUN pip install '.[apprise,postgres]' \
    && useradd --system --uid 10001 --home-dir /app --shell /usr/sbin/nologin watcher \
    && mkdir -p /app/state \
    && chown watcher /app/state

COPY config ./config

USER watcher
VOLUME ["/app/state"]
EXPOSE 9187
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:9187/healthz', timeout=4).status != 200)"]
CMD ["watcher", "run", "-c", "/app/config/watch.yaml"]
