# scoresde as an OCI container image (builds with Docker or Podman): Debian bookworm, its Python 3.11, the pinned
# torch from PyPI (its Linux wheels carry CUDA: the same image runs on the CPU and, with NVIDIA's container toolkit
# on the host, on GPUs), and scoresde installed from a wheel built in the first stage. docs/install.md says more.
#   podman build -t scoresde .                  (or: docker build -t scoresde .)
#   podman run --rm -v "$PWD/runs:/runs" scoresde demo --toy --out /runs/toy
#   podman run --rm --device nvidia.com/gpu=all -v "$PWD/runs:/runs" scoresde train --config digits/vp_ddpmpp \
#       --workdir /runs/digits --device cuda     (docker: --gpus all)
# Build arguments (nothing of them stays in the image):
#   BASE_IMAGE       a Debian bookworm image; .ci/container_check.sh makes one with debootstrap where no image
#                    registry can be reached
#   TORCH_PIN        the torch requirement, the Makefile's pin by default
#   PIP_CONFIG_FILE  a pip configuration file (index, certificates, find-links) the build mounts as a volume
ARG BASE_IMAGE=docker.io/library/debian:bookworm-slim

FROM ${BASE_IMAGE} AS python
LABEL org.opencontainers.image.title="scoresde" \
      org.opencontainers.image.description="Score-based diffusion models in pure PyTorch"
RUN apt-get update -qq \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        python3 python3-venv ca-certificates > /dev/null \
    && rm -rf /var/lib/apt/lists/*

# stage 1: the wheel, from the package's sources only (.dockerignore keeps the rest of the checkout out)
FROM python AS wheel
ARG PIP_CONFIG_FILE
COPY pyproject.toml README.md /src/
COPY src /src/src
RUN python3 -m venv /tmp/build \
    && /tmp/build/bin/pip wheel --no-cache-dir --quiet --disable-pip-version-check --no-deps --wheel-dir /wheel /src

# stage 2: torch in a venv (its own layer, several GB, kept in the build cache when the sources change), then the
# wheel with its dependencies; the run as a non-root user
FROM python
ARG PIP_CONFIG_FILE
ARG TORCH_PIN="torch==2.14.1 torchvision==0.29.1"
ENV PATH=/opt/scoresde/bin:$PATH \
    PYTHONUNBUFFERED=1
RUN python3 -m venv /opt/scoresde \
    && pip install --no-cache-dir --quiet --disable-pip-version-check $TORCH_PIN
COPY --from=wheel /wheel /tmp/wheel
RUN pip install --no-cache-dir --quiet --disable-pip-version-check /tmp/wheel/scoresde-*.whl \
    && rm -rf /tmp/wheel \
    && scoresde --version
RUN useradd --create-home --uid 1000 --user-group --shell /bin/bash scoresde \
    && mkdir -p /data /runs \
    && chown scoresde:scoresde /data /runs
USER scoresde
WORKDIR /runs
# /data: datasets (image folders, CIFAR-10 downloads); /runs: run folders, samples, metrics
VOLUME ["/data", "/runs"]
ENTRYPOINT ["scoresde"]
CMD ["--help"]
