FROM python:3.11-slim
WORKDIR /app
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
COPY pyproject.toml README.md ./
COPY settings.py celeryconfig.py alembic.ini ./
COPY tasks tasks
COPY clients clients
COPY db db
COPY prompts prompts
COPY kb kb
COPY pipeline pipeline
COPY domain domain
COPY infra infra
COPY emulators emulators
COPY cli cli
COPY web web
COPY mcp_server mcp_server
# Editable, so settings.ROOT is /app and the knowledge base in /app/kb/docs is found.
RUN pip install --no-cache-dir -e . && useradd --create-home app && chown -R app /app
USER app
CMD ["celery", "-A", "tasks", "worker", "-l", "INFO"]
