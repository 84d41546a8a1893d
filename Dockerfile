# One image for the producer, processor, dashboard and JupyterLab services of compose.yml.
FROM python:3.11-slim
WORKDIR /app
ENV PIP_NO_CACHE_DIR=1 PYTHONUNBUFFERED=1 SENSORLIB_HOST=0.0.0.0
# jemalloc: the dashboard gives closed sessions' memory back on it (SENSORLIB_DASHBOARD_ALLOCATOR).
RUN apt-get update && apt-get install -y --no-install-recommends libjemalloc2 \
    && rm -rf /var/lib/apt/lists/*
COPY pyproject.toml constraints.txt README.md ./
COPY sensorlib ./sensorlib
RUN pip install -c constraints.txt -e .
COPY dashboards ./dashboards
COPY notebooks ./notebooks
EXPOSE 8081 8082 5006 8888
CMD ["sensorlib", "--help"]
