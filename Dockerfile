# memlake services image: `memlake serve --service {all,ingest,retrieval,versioning}`.
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY memlake ./memlake
COPY shared ./shared
COPY ingest_service ./ingest_service
COPY retrieval_service ./retrieval_service
COPY versioning_service ./versioning_service
RUN pip install . && useradd --uid 10001 --user-group --no-create-home memlake
USER 10001
ENV MEMLAKE_HOST=0.0.0.0 MEMLAKE_METRICS_HOST=0.0.0.0 MEMLAKE_DATA_DIR=/var/lib/memlake
EXPOSE 50051 9464
CMD ["memlake", "serve"]
