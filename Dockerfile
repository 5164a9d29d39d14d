# DialoGPT toolkit on an NVIDIA GPU (or CPU):
#   docker build -t dialogpt .
#   docker run --gpus all --rm -it dialogpt                          # python demo.py
#   docker run --gpus all --rm -it -v "$PWD/data:/workspace/data" dialogpt \
#       python LSP_train.py --help
# Mount a Hugging Face cache to reuse downloaded models: -v ~/.cache/huggingface:/cache/huggingface
#
# Base: the CUDA "base" image sets what the NVIDIA container toolkit needs (driver
# capabilities, visible devices) without a second copy of the CUDA libraries: the torch
# wheel below ships its own CUDA runtime and cuDNN. Its CUDA release (12.8) matches the
# wheel's; the host needs an NVIDIA driver for CUDA 12.8 (>= 570). Ubuntu 22.04's own
# Python is 3.10, so Python 3.11 (the toolkit's version) comes from the deadsnakes PPA.
FROM nvidia/cuda:12.8.1-base-ubuntu22.04

# Which CUDA build of torch to take from the PyTorch index (cu128 = CUDA 12.8); another
# variant published for the same torch release can be chosen with --build-arg.
ARG TORCH_CUDA=cu128

ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HF_HOME=/cache/huggingface \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH

# make: the Reddit extractor; Java: the METEOR scorer of dstc/.
RUN apt-get update \
    && apt-get install -y --no-install-recommends software-properties-common gpg-agent \
    && add-apt-repository -y ppa:deadsnakes/ppa \
    && apt-get update \
    && apt-get install -y --no-install-recommends python3.11 python3.11-venv make \
        openjdk-17-jre-headless ca-certificates \
    && apt-get purge -y software-properties-common gpg-agent \
    && apt-get autoremove -y \
    && rm -rf /var/lib/apt/lists/*

RUN python3.11 -m venv /opt/venv && pip install --upgrade pip

# The CUDA build of the torch release pyproject.toml pins, first: the next step then finds
# torch==2.13.0 satisfied and keeps it (from PyPI it could get another build).
RUN pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/${TORCH_CUDA}

WORKDIR /workspace
# The locked versions alone first, so that code changes do not redo the installs; then the
# toolkit itself, with nothing more to fetch (setuptools is in the lock).
COPY requirements.lock ./
RUN pip install -r requirements.lock

COPY . .
RUN pip install --no-deps --no-build-isolation -e .

CMD ["python", "demo.py"]
