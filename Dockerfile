# One image, one entry point per role:
#   docker run IMAGE serve --host 0.0.0.0      (gateway: REST now, Socket.IO with the hub)
#   docker run IMAGE migrate                   (run once per release)
#   docker run IMAGE create-admin --email E --password P
# Set DATABASE_URL, REDIS_URL and CAREWIRE_JWT_SECRET; without them the container falls
# back to the embedded PostgreSQL/Redis under /data, which is for trying it out only.
FROM python:3.12-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
RUN useradd --system --create-home --home-dir /app carewire && mkdir /data && chown carewire /data
WORKDIR /app

COPY pyproject.toml README.md piccolo_conf.py ./
COPY domain ./domain
COPY gateway ./gateway
COPY realtime ./realtime
COPY tasks ./tasks
RUN pip install .

USER carewire
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=3s CMD python -c "import urllib.request,sys; \
  sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/health/live').status == 200 else 1)"
ENTRYPOINT ["carewire"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8000", "--data-dir", "/data"]
