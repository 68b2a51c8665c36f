# One image for every agentstore service: `agentstore serve <name>`.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml uv.lock README.md ./
COPY shared ./shared
COPY services ./services
# The services are the agentstore-server distribution (with the SDK it depends on); agents
# install the bare SDK (`pip install agentstore`). Exactly the locked versions (hash-checked),
# then the two distributions themselves without resolving again.
RUN pip install --no-cache-dir uv==0.13.9 \
 && uv export --frozen --package agentstore-server --no-dev --no-emit-workspace -o /tmp/requirements.txt \
 && pip install --no-cache-dir --prefix=/install --require-hashes -r /tmp/requirements.txt \
 && pip install --no-cache-dir --prefix=/install --no-deps ./shared ./services

FROM python:3.11-slim
RUN useradd --system --uid 10001 --no-create-home agentstore
COPY --from=build /install /usr/local
USER 10001
ENV PYTHONUNBUFFERED=1 HEALTH_HOST=0.0.0.0 HEALTH_PORT=8080 WEB_HOST=0.0.0.0 WEB_PORT=8000
# 8080: probes and /metrics of every service; 8000: the web console (`serve web`);
# 4318: the OTLP/HTTP receiver (`serve otlp`, OTLP_HOST=0.0.0.0 to listen beyond the pod).
EXPOSE 8080 8000 4318
HEALTHCHECK --interval=10s --timeout=3s --retries=3 \
  CMD python -c "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8080/readyz', timeout=2).status != 200)"
ENTRYPOINT ["agentstore", "serve"]
CMD ["logs"]
