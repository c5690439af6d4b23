"""Pipeline logic the tasks call: plain functions, tested without Celery."""
