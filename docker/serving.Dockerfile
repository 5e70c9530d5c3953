# syntax=docker/dockerfile:1
# A kuberec serving replica: the BentoML service (/recommend /similar /score /feedback
# /healthz /metrics) on CPU torch. GPU serving images install their own torch first and
# then `pip install --no-deps` the package instead.
# Build from the repository root: docker build -f docker/serving.Dockerfile -t kuberec-serving .
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HOME=/tmp \
    BENTOML_HOME=/tmp/bentoml

RUN groupadd --system --gid 10001 kuberec \
    && useradd --system --uid 10001 --gid kuberec --no-create-home --shell /usr/sbin/nologin kuberec

WORKDIR /opt/kuberec
COPY pyproject.toml README.md ./
COPY kuberec ./kuberec
COPY components ./components
COPY operator ./operator
COPY pipelines ./pipelines
COPY serving ./serving
COPY feature_repo ./feature_repo
RUN pip install --extra-index-url https://download.pytorch.org/whl/cpu . \
    && kuberec --help > /dev/null

USER 10001:10001
EXPOSE 3000
# The model bundle is mounted (or pulled from the artifact store) at /models by the operator.
ENTRYPOINT ["kuberec", "serve"]
CMD ["/models/current", "--host", "0.0.0.0", "--port", "3000"]
