# A GPU worker: one container per GPU. CUDA wheels of torch come from PyPI's default index.
FROM nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04
ENV DEBIAN_FRONTEND=noninteractive PIP_BREAK_SYSTEM_PACKAGES=1 PYTHONUNBUFFERED=1
RUN apt-get update && apt-get install -y --no-install-recommends python3 python3-pip python3-venv \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app
RUN python3 -m venv /venv
ENV PATH=/venv/bin:$PATH
COPY pyproject.toml README.md ./
COPY imaginarium ./imaginarium
COPY core ./core
COPY db ./db
COPY bot/__init__.py ./bot/__init__.py
COPY gpu_worker ./gpu_worker
COPY migrations ./migrations
# quant: torchao and gguf; bitsandbytes for quantize = "nf4" (CUDA only); torchvision for the
# processors of vision-language text encoders (FLUX.2 [dev]'s Mistral Small 3 / Pixtral), built
# for the same CUDA torch that the worker extra installs.
RUN pip install --no-cache-dir ".[worker,quant,s3]" bitsandbytes torchvision
CMD ["imaginarium", "worker"]
