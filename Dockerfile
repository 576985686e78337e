# The gateway image: the package and policies/ on python:3.11-slim, run as an unprivileged user.
#
#   docker build -t veilig-delen-gateway:0.1.0 .
#   docker run --rm veilig-delen-gateway:0.1.0 --help
#
# No key, secret or setting with a secret is baked in: they come at run time from files named by
# GATEWAY_*_KEY_FILE settings and from the environment (deploy/compose.yaml, deploy/k8s/). The image is
# validated by tests/e2e/test_deploy_files.py (and hadolint where it is installed); see deploy/README.md
# for what was and was not run. For production, pin the base image by digest as well as by tag.

ARG PYTHON_IMAGE=python:3.11.13-slim-bookworm

# --- build: install the package and its dependencies into a virtual environment -----------------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY gateway ./gateway
COPY audit ./audit
COPY connectors ./connectors
COPY standins ./standins
RUN python -m venv /opt/venv \
 && /opt/venv/bin/pip install --no-cache-dir . \
 && /opt/venv/bin/gateway --help > /dev/null

# --- runtime: the virtual environment, the policies, a user without a shell or a home ------------------
FROM ${PYTHON_IMAGE} AS runtime
# DejaVu Sans for the PDF reports (gateway/services/report_formats.py): every character of a name prints.
RUN apt-get update \
 && apt-get install -y --no-install-recommends fonts-dejavu-core=2.37-6 \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 gateway \
 && useradd --system --uid 10001 --gid gateway --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin gateway \
 && install -d -o 10001 -g 10001 -m 0700 /var/lib/veilig-delen /keys
COPY --from=build /opt/venv /opt/venv
# Read-only for the gateway's user: the policy revision is computed from exactly these files.
COPY policies /policies
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    GATEWAY_HOST=0.0.0.0 \
    GATEWAY_PORT=8000 \
    GATEWAY_DATA_DIR=/var/lib/veilig-delen \
    GATEWAY_POLICY_DIR=/policies
# /keys: where deploy/compose.yaml mounts the shared key volume (the directory's owner and mode carry
# over into a new named volume); in Kubernetes an emptyDir filled from the Secret.
USER 10001:10001
WORKDIR /var/lib/veilig-delen
EXPOSE 8000
# Ready, not only alive: /readyz answers 503 while the database, the policy engine or the audit log is
# unavailable. The slim image has no curl; Python's urllib does the same.
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
  CMD ["python", "-c", "import os, sys, urllib.request; url = 'http://127.0.0.1:%s/readyz' % os.environ.get('GATEWAY_PORT', '8000'); sys.exit(0 if urllib.request.urlopen(url, timeout=4).status == 200 else 1)"]
ENTRYPOINT ["gateway"]
CMD ["serve"]
