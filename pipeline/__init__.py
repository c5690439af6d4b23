"""What the tasks call: plain functions, tested without Celery. One module per stage, named like
its queue and its task module (`tasks/<stage>.py` calls `pipeline/<stage>.py`):

    poll, webhook -> ingest -> transcribe -> classify -> respond -> send;  followup;  recover

and, for what several stages share, a module named for the thing it holds: `inbound` (storing a
channel's message, and a message's bookkeeping on its way to an answer), `contacts`, `profiles`,
`outbox` (the one writer of outbox rows), `history` (a conversation as model turns), `usage`
(model usage), `voice_media`, `dead_letters`, `locks` (Defer and short Redis locks), `ops`
(/health and /stats). A stage module never imports another stage module.

The session contract: a function takes one `Session` and leaves the commit to its caller. A
function that needs several transactions (a model call or an HTTP call must not hold one open, or
each chat of a poll commits on its own) takes a `SessionFactory` named `sessions` and opens one
session per unit of work; each stage's entry point of that kind is `run_<stage>`.
"""
