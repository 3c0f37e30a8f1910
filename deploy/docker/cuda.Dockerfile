# The leptonkit server for NVIDIA GPUs: the package's wheel with the `vllm` extra (the serve extra plus vLLM, which
# brings its CUDA build of torch) on a CUDA runtime image. The host needs the NVIDIA driver and container toolkit.
#   docker build -f deploy/docker/cuda.Dockerfile -t leptonkit:cuda .     (from the repository root)
# Models are added on top by models.Dockerfile; `leptonkit deploy k8s --gpu N` renders the manifests that run it.

ARG CUDA_IMAGE=nvidia/cuda:12.8.1-runtime-ubuntu24.04

# 1. the wheel, built from the source tree (pure Python)
FROM python:3.12-slim AS wheel
WORKDIR /src
COPY pyproject.toml README.md LICENSE ./
COPY src ./src
RUN pip install --no-cache-dir build && python -m build --wheel --outdir /dist

# 2. a virtual environment on the CUDA image's Python (3.12 on Ubuntu 24.04)
FROM ${CUDA_IMAGE} AS venv
RUN apt-get update && apt-get install -y --no-install-recommends python3 python3-venv \
    && rm -rf /var/lib/apt/lists/* \
    && python3 -m venv /opt/leptonkit
COPY --from=wheel /dist /dist
RUN /opt/leptonkit/bin/pip install --no-cache-dir "$(ls /dist/leptonkit-*.whl)[vllm]"

# 3. the runtime: the environment only, a non-root user, writable state in LEPTONKIT_HOME (an emptyDir in the pod)
FROM ${CUDA_IMAGE}
RUN apt-get update && apt-get install -y --no-install-recommends python3 \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --gid 10001 leptonkit \
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
