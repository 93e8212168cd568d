# customer-service: the faust-streaming worker of acme-customer.
# Not built on the build machines (no Docker engine there); see deploy/README.md.
#
#   docker build -t acme/customer-service:local .
#   docker run --rm -p 6066:6066 -e KAFKA_BOOTSTRAP_SERVERS=... -e DATABASE_URL=... \
#              -e MONGODB_URI=... -e API_TOKENS=... acme/customer-service:local
# (without API_TOKENS or API_TOKENS_FILE the customer API answers 503: it is never open)
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# non-root user; /app is its home and the working directory, because Faust writes its
# data directory (customer-service-data/) relative to the working directory
RUN groupadd --system --gid 10001 app \
 && useradd --system --uid 10001 --gid app --home-dir /app --no-create-home --shell /usr/sbin/nologin app

WORKDIR /app

# the pinned runtime dependencies first (own layer, cached while only the code changes)
COPY requirements.txt /tmp/build/requirements.txt
RUN pip install --no-cache-dir -r /tmp/build/requirements.txt

# then the package itself (non-editable, into site-packages; the source is not kept)
COPY setup.py setup.cfg pyproject.toml README.md /tmp/build/
COPY acme_customer /tmp/build/acme_customer
COPY avro /tmp/build/avro
RUN pip install --no-cache-dir /tmp/build \
 && rm -rf /tmp/build \
 && chown app:app /app

USER app:app

# WEB_HOST defaults to 127.0.0.1 in the code: a container must listen on every interface
ENV WEB_HOST=0.0.0.0 \
    WEB_PORT=6066

EXPOSE 6066

HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health' % os.environ.get('WEB_PORT', '6066'), timeout=4)"]

# Faust handles SIGTERM itself (finishes the batch in flight, then commits): give it time,
# e.g. `docker stop -t 45` / stop_grace_period / terminationGracePeriodSeconds.
CMD ["faust", "-A", "acme_customer.app", "worker", "-l", "info"]
