# syntax=docker/dockerfile:1
# Two images from one file:
#   docker build --target engine -t eras-engine .        # eras serve / worker / migrate, the API
#   docker build --target fhir-sandbox -t eras-fhir-sandbox .   # the in-memory FHIR server (demo, tests)

FROM python:3.11-slim AS engine
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app
# Dependencies first: a code change does not reinstall them.
COPY pyproject.toml README.md ./
RUN mkdir engine fhir_adapters flows api store eras_cli \
    && pip install . && pip uninstall -y eras-engine
COPY engine ./engine
COPY fhir_adapters ./fhir_adapters
COPY flows ./flows
COPY api ./api
COPY store ./store
COPY eras_cli ./eras_cli
COPY pathways ./pathways
COPY deploy/log-config.yaml ./deploy/log-config.yaml
# Editable: pathway files and migrations are read next to the code, from /app.
RUN pip install --no-deps -e . \
    && useradd --uid 10001 --home-dir /app --no-create-home eras \
    && mkdir -p /app/audit-reports /var/lib/eras && chown eras /app/audit-reports /var/lib/eras
USER 10001
ENV ERAS_LOG_FORMAT=json PREFECT_HOME=/var/lib/eras/prefect
EXPOSE 8000
CMD ["eras", "serve", "--host", "0.0.0.0", "--port", "8000"]

FROM node:20-slim AS fhir-sandbox
WORKDIR /sandbox
COPY deploy/fhir-sandbox/package.json deploy/fhir-sandbox/package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund --loglevel=error
COPY deploy/fhir-sandbox/server.mjs ./
USER node
ENV HOST=0.0.0.0 PORT=8103
EXPOSE 8103
CMD ["node", "server.mjs"]
