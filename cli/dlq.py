"""`celery -A tasks dlq ...`: list, show, replay and purge the dead-letter table.

Registered through the `celery.commands` entry point (see pyproject.toml), so it needs the
project installed (`pip install -e .`, which both make targets do).
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import click
from sqlalchemy import delete, select, update

from db.models import DeadLetter
from db.session import session_scope
from infra.logging import mask_text
from pipeline.inbound import REJECTED_TASK

DURATION = re.compile(r"^(\d+)\s*([smhdw])$")
UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_moment(value: str) -> datetime:
    """`30m`, `2h`, `7d` (that long ago) or an ISO date/time (UTC when no offset is given)."""
    text = value.strip()
    match = DURATION.match(text)
    if match:
        return datetime.now(UTC) - timedelta(**{UNITS[match.group(2)]: int(match.group(1))})
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise click.BadParameter(f"{value!r} is neither a duration like 2h / 7d nor an ISO date") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _app(ctx: click.Context) -> Any:
    app = getattr(ctx.obj, "app", None)
    if app is None:
        raise click.UsageError("use it as `celery -A tasks dlq ...`")
    return app


@click.group()
@click.pass_context
def dlq(ctx: click.Context, **_preload: Any) -> None:
    """Dead-letter table: tasks that failed for good."""
    _app(ctx)


@dlq.command("list")
@click.option("--task", "task_name", help="only this task, e.g. pipeline.send")
@click.option("--since", help="failed since: a duration (2h, 7d) or an ISO date")
@click.option("--limit", default=100, show_default=True)
@click.pass_context
def list_(ctx: click.Context, task_name: str | None, since: str | None, limit: int) -> None:
    """List dead letters, newest first."""
    _app(ctx)
    query = select(DeadLetter).order_by(DeadLetter.last_failed_at.desc(), DeadLetter.id.desc()).limit(limit)
    if task_name:
        query = query.where(DeadLetter.task_name == task_name)
    if since:
        query = query.where(DeadLetter.last_failed_at >= parse_moment(since))
    with session_scope() as session:
        rows = list(session.scalars(query))
    if not rows:
        click.echo("no dead letters")
        return
    click.echo(f"{'ID':>5}  {'FAILED AT (UTC)':19}  {'TASK':18}  {'ARGS':12}  {'TRIES':>5}  {'REPLAYED':>8}  ERROR")
    for row in rows:
        click.echo(f"{row.id:>5}  {row.last_failed_at:%Y-%m-%d %H:%M:%S}  {row.task_name:18}  "
                   f"{json.dumps(row.args)[:12]:12}  {row.attempts:>5}  {row.replay_count:>8}  "
                   f"{mask_text(row.exception.splitlines()[0])[:80] if row.exception else ''}")


@dlq.command("show")
@click.argument("dead_letter_id", type=int)
@click.pass_context
def show(ctx: click.Context, dead_letter_id: int) -> None:
    """Everything stored about one dead letter, traceback included (masked like logs)."""
    _app(ctx)
    with session_scope() as session:
        row = session.get(DeadLetter, dead_letter_id)
        if row is None:
            raise click.ClickException(f"no dead letter with id {dead_letter_id}")
        # Stored masked since issue 10; masked again here for letters written before that.
        click.echo(mask_text(json.dumps({
            "id": row.id, "task": row.task_name, "task_id": row.task_id, "queue": row.queue,
            "args": row.args, "kwargs": row.kwargs, "rest_of_chain": row.chain,
            "attempts": row.attempts, "first_failed_at": row.first_failed_at.isoformat(),
            "last_failed_at": row.last_failed_at.isoformat(), "replay_count": row.replay_count,
            "replayed_at": row.replayed_at.isoformat() if row.replayed_at else None,
            "exception": row.exception,
        }, ensure_ascii=False, indent=2)))
        click.echo("\n" + mask_text(row.traceback))


@dlq.command("replay")
@click.argument("dead_letter_id", type=int, required=False)
@click.option("--all", "replay_all", is_flag=True, help="every dead letter not replayed yet")
@click.option("--task", "task_name", help="with --all: only this task")
@click.pass_context
def replay(ctx: click.Context, dead_letter_id: int | None, replay_all: bool, task_name: str | None) -> None:
    """Re-enqueue on the original queue with the original ids and the rest of the chain.

    Every stage is idempotent and keyed by the same ids, so a second replay sends nothing twice.
    """
    app = _app(ctx)
    if (dead_letter_id is None) == (not replay_all):
        raise click.UsageError("give one dead-letter ID or --all")
    with session_scope() as session:
        if dead_letter_id is not None:
            row = session.get(DeadLetter, dead_letter_id)
            if row is None:
                raise click.ClickException(f"no dead letter with id {dead_letter_id}")
            rows = [row]
        else:
            query = select(DeadLetter).where(DeadLetter.replay_count == 0).order_by(DeadLetter.id)
            if task_name:
                query = query.where(DeadLetter.task_name == task_name)
            rows = list(session.scalars(query))
        for row in rows:
            task = app.tasks.get(row.task_name)
            if task is None:
                why = _not_replayable(row.task_name)
                if dead_letter_id is not None:
                    raise click.ClickException(f"dead letter {row.id} cannot be replayed: {why}")
                click.echo(f"skipped dead letter {row.id} ({row.task_name}): {why}")
                continue
            prepare = getattr(task, "prepare_replay", None)
            if prepare is not None:
                prepare(list(row.args), dict(row.kwargs))
            result = app.send_task(row.task_name, args=list(row.args), kwargs=dict(row.kwargs),
                                   queue=row.queue or None, chain=row.chain or None)
            session.execute(update(DeadLetter).where(DeadLetter.id == row.id).values(
                replay_count=DeadLetter.replay_count + 1, replayed_at=datetime.now(UTC)))
            click.echo(f"replayed dead letter {row.id} ({row.task_name} {json.dumps(row.args)}) "
                       f"as task {result.id} on queue {row.queue or 'default'}")
    if not rows:
        click.echo("nothing to replay")


def _not_replayable(task_name: str) -> str:
    if task_name == REJECTED_TASK:
        return ("not a Celery task: a message the poll or webhook could not read or store; its masked "
                "payload is kept for inspection (`dlq show`), there is nothing to re-run")
    return f"unknown task {task_name}: no such Celery task is registered"


@dlq.command("purge")
@click.argument("dead_letter_id", type=int, required=False)
@click.option("--older-than", help="a duration (30d) or an ISO date")
@click.pass_context
def purge(ctx: click.Context, dead_letter_id: int | None, older_than: str | None) -> None:
    """Delete one dead letter, or all that last failed before a moment."""
    _app(ctx)
    if (dead_letter_id is None) == (older_than is None):
        raise click.UsageError("give one dead-letter ID or --older-than")
    with session_scope() as session:
        if dead_letter_id is not None:
            result = session.execute(delete(DeadLetter).where(DeadLetter.id == dead_letter_id))
        else:
            assert older_than is not None
            result = session.execute(delete(DeadLetter).where(
                DeadLetter.last_failed_at < parse_moment(older_than)))
        count = result.rowcount  # type: ignore[attr-defined]  # CursorResult of a DELETE
    click.echo(f"purged {count} dead letter(s)")
