# The leptonkit server for CPUs: the package's wheel with the `serve` extra on PyTorch's CPU build.
#   docker build -f deploy/docker/cpu.Dockerfile -t leptonkit:cpu .      (from the repository root)
# Models are added on top by models.Dockerfile; `leptonkit deploy k8s` renders the manifests that run it.

ARG PYTHON_IMAGE=python:3.12-slim

# 1. the wheel, built from the source tree (pure Python: any later stage's Python >= 3.11 installs it)
FROM ${PYTHON_IMAGE} AS wheel
WORKDIR /src
COPY pyproject.toml README.md LICENSE ./
COPY src ./src
RUN pip install --no-cache-dir build && python -m build --wheel --outdir /dist

# 2. a virtual environment: torch from PyTorch's CPU index first (the default index has the CUDA build), then the
#    wheel with its serve extra, which finds torch already there
FROM ${PYTHON_IMAGE} AS venv
ARG TORCH_VERSION=2.13.0
RUN python -m venv /opt/leptonkit \
    && /opt/leptonkit/bin/pip install --no-cache-dir --index-url https://download.pytorch.org/whl/cpu "torch==${TORCH_VERSION}"
COPY --from=wheel /dist /dist
RUN /opt/leptonkit/bin/pip install --no-cache-dir "$(ls /dist/leptonkit-*.whl)[serve]"

# 3. the runtime: the environment only, a non-root user, writable state in LEPTONKIT_HOME (an emptyDir in the pod)
FROM ${PYTHON_IMAGE}
RUN groupadd --gid 10001 leptonkit \
    && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /tmp --shell /usr/sbin/nologin leptonkit \
    && mkdir -p /var/lib/leptonkit /models \
    && chown 10001:10001 /var/lib/leptonkit
COPY --from=venv /opt/leptonkit /opt/leptonkit
ENV PATH=/opt/leptonkit/bin:$PATH \
    LEPTONKIT_HOME=/var/lib/leptonkit \
    HOME=/tmp \
    HF_HUB_OFFLINE=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
USER 10001:10001
EXPOSE 8000
# /health answers once the models are loaded and uvicorn listens (loading can take minutes: start period)
HEALTHCHECK --interval=30s --timeout=5s --start-period=600s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=4).status != 200)"]
ENTRYPOINT ["leptonkit"]
CMD ["serve", "--help"]
