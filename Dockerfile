FROM python:3.11-slim
WORKDIR /app
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 HUB_DATA_DIR=/var/lib/hub
COPY pyproject.toml README.md ./
COPY workflow workflow
COPY hub hub
COPY adapters adapters
COPY schemas schemas
COPY mocks mocks
RUN pip install --no-cache-dir . && useradd --system --home /var/lib/hub hub && mkdir -p /var/lib/hub \
    && chown hub /var/lib/hub
USER hub
EXPOSE 8000
CMD ["hub", "api", "--host", "0.0.0.0", "--port", "8000"]
