# One image for every service; the compose file picks the service with its command.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY services services
COPY clients clients
RUN pip install --no-cache-dir .
ENV REGISTRY_HOST=0.0.0.0
CMD ["sandbox", "up"]
