FROM python:3.12-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    WATCHER_LISTEN=0.0.0.0:9187 WATCHER_DB=/app/state/watcher.db
WORKDIR /app

# Dependencies first, in a layer of their own: editing watcher's code rebuilds only the
# small layer below it.
COPY pyproject.toml README.md ./
RUN mkdir watcher && touch watcher/__init__.py \
    && pip install '.[apprise,postgres]' \
    && pip uninstall -y watcher-feeds && rm -rf watcher build *.egg-info

COPY watcher ./watcher
RUN pip install --no-deps . \
    && useradd --system --uid 10001 --home-dir /app --shell /usr/sbin/nologin watcher \
    && mkdir -p /app/state \
    && chown watcher /app/state

COPY config ./config

USER watcher
VOLUME ["/app/state"]
EXPOSE 9187
# WATCHER_LISTEN overrides the config's listen address, so the check asks the port it names
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, sys, urllib.request; port = os.environ.get('WATCHER_LISTEN', '0.0.0.0:9187').rpartition(':')[2]; sys.exit(urllib.request.urlopen(f'http://127.0.0.1:{port}/healthz', timeout=4).status != 200)"]
CMD ["watcher", "run", "-c", "/app/config/watch.yaml"]
