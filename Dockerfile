# syntax=docker/dockerfile:1
# leadgw gateway image. Build: docker build -t leadgw:0.1.0 .   Guide: docs/deployment.md
#
# Two stages: the builder turns the source tree into a wheel; the runtime stage installs that
# wheel (and nothing of the source tree) into a virtual environment. tests/deploy checks that
# the wheel is built and installed here exactly as tests/deploy/test_install.py does it.

# ---- builder: source tree -> wheel ----------------------------------------------------------
FROM python:3.11.14-slim-bookworm AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
# The build backend is installed first so that the wheel build itself needs no isolation
# (the same command the install test runs offline).
RUN python -m pip install "setuptools>=69" wheel
COPY pyproject.toml README.md ./
COPY gateway ./gateway
COPY runtimes ./runtimes
COPY retrieval ./retrieval
COPY benchmarks ./benchmarks
COPY leadgw_client ./leadgw_client
RUN python -m pip wheel --no-deps --no-build-isolation --wheel-dir /wheels .

# ---- runtime: the wheel in a venv, run as a fixed non-root uid --------------------------------
FROM python:3.11.14-slim-bookworm AS runtime
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    VIRTUAL_ENV=/opt/leadgw/venv \
    PATH=/opt/leadgw/venv/bin:$PATH
RUN groupadd --system --gid 10001 leadgw \
 && useradd --system --uid 10001 --gid 10001 --no-create-home \
        --home-dir /var/lib/leadgw --shell /usr/sbin/nologin leadgw \
 && python -m venv /opt/leadgw/venv \
 && mkdir -p /var/lib/leadgw \
 && chown 10001:10001 /var/lib/leadgw
COPY --from=builder /wheels /tmp/wheels
# The wheel with its dependencies (the MiniLM tokenizer ships inside it). Bytecode is compiled
# now, because the root filesystem is read-only at run time.
RUN python -m pip install /tmp/wheels/leadgw-*.whl \
 && python -m compileall -q /opt/leadgw/venv \
 && rm -rf /tmp/wheels

# The bundled model repository at a fixed path. A new model needs no new image: mount a volume
# here, or elsewhere and point LEADGW_MODEL_REPOSITORY at it.
COPY runtimes/bundled_models /opt/leadgw/models

# Off loopback the gateway requires a keys file (LEADGW_KEYS_FILE, mounted from a Secret); it
# refuses to start without one. data_dir (the embedded notes store) is the only place it writes
# besides /tmp: both are volumes, so the root filesystem can be read-only.
ENV LEADGW_HOST=0.0.0.0 \
    LEADGW_PORT=50051 \
    LEADGW_METRICS_HOST=0.0.0.0 \
    LEADGW_METRICS_PORT=9464 \
    LEADGW_MODEL_REPOSITORY=/opt/leadgw/models \
    LEADGW_DATA_DIR=/var/lib/leadgw
VOLUME ["/var/lib/leadgw", "/tmp"]
WORKDIR /var/lib/leadgw
USER 10001:10001
# gRPC, Prometheus metrics (OpenTelemetry's conventional exporter port), and the plaintext
# health port for probes that cannot speak TLS (LEADGW_HEALTH_PORT, set by the manifests).
EXPOSE 50051 9464 50052
# SIGTERM starts the drain (health NOT_SERVING), then the grace period for in-flight calls.
STOPSIGNAL SIGTERM
# No HEALTHCHECK: Kubernetes' native grpc probes call the grpc.health.v1 service directly.
ENTRYPOINT ["leadgw", "serve"]
