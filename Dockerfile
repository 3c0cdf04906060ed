# One image for every Funnelstream service; the command picks the role.
FROM python:3.11-slim AS base

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
RUN apt-get update \
 && apt-get install -y --no-install-recommends libgl1 libglib2.0-0 curl \
 && rm -rf /var/lib/apt/lists/*
RUN useradd --create-home --uid 10001 funnelstream \
 && install -d -o funnelstream -g funnelstream /home/funnelstream/state
WORKDIR /app

COPY pyproject.toml README.md ./
COPY funnelstream ./funnelstream
COPY ingest ./ingest
COPY stream_processors ./stream_processors
COPY inference_service ./inference_service
COPY clickhouse ./clickhouse
COPY infra ./infra
COPY ops ./ops
RUN pip install --no-cache-dir .

USER funnelstream
# What a service writes; a volume mounted here starts owned by the service's user.
ENV FS_ENVIRONMENT=prod FS_LOG_JSON=true FS_PATHS__DATA_DIR=/home/funnelstream/state
ENTRYPOINT ["funnelstream"]
CMD ["--help"]
