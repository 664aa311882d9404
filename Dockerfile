FROM python:3.12-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app

COPY pyproject.toml README.md ./
COPY watcher ./watcher
RUN pip install '.[apprise]' \
    && useradd --system --uid 10001 --home-dir /app --shell /usr/sbin/nologin watcher \
    && mkdir -p /app/state \
    && chown watcher /app/state

COPY config ./config

USER watcher
VOLUME ["/app/state"]
EXPOSE 9187
CMD ["watcher", "run", "-c", "/app/config/watch.yaml"]
