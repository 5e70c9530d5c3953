# syntax=docker/dockerfile:1
# The kuberec operator: `kuberec operator run` (kopf) with the CPU build of torch, since
# the operator only plans and talks to APIs; training runs on Ray/KFP workers.
# Build from the repository root: docker build -f docker/operator.Dockerfile -t kuberec-operator .
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HOME=/tmp

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
EXPOSE 8080
ENTRYPOINT ["kuberec", "operator", "run"]
CMD ["--standalone", "--liveness=http://0.0.0.0:8080/healthz", "--metrics-host=0.0.0.0"]
