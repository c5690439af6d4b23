"""Prompt tokens per reply against the size of the knowledge base (1, 10 and 100 PDF pages).
Target: never more than the configured budget plus the conversation, whatever the size.

    .venv/bin/python bench/tokens.py
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from common import Bench, machine

QUESTION = "Здравствуйте! Сколько стоит доставка в Талгар и есть ли торт без сахара?"


def main() -> None:
    # deferred: project modules read the settings at import, after the bench set them
    from clients.gemini import build_client
    from db.models import Contact, Message, Profile
    from db.session import session_scope
    from kb.chunking import estimate_tokens
    from kb.index import build_index
    from kb.sample import build_pdf
    from pipeline.respond import reply_context
    from prompts.markers import KB_END, KB_START
    from settings import get_settings

    bench = Bench("assistant_bench_tokens")
    figures: dict[str, int] = {}
    try:
        settings = get_settings()
        client = build_client(settings)
        with session_scope() as session:
            profile = Profile(profile_id="be0c0000-0001", name="bench")
            session.add(profile)
            session.flush()
            contact = Contact(profile_id=profile.id, phone="77000000001", chat_id="77000000001@c.us")
            session.add(contact)
            session.flush()
            message = Message(profile_id=profile.id, contact_id=contact.id, provider_message_id="Q1", direction="in",
                              author="customer", text=QUESTION, status="received")
            session.add(message)
            session.flush()
            message_id = message.id
        conversation_tokens = estimate_tokens(QUESTION)
        for pages in (1, 10, 100):
            folder = Path(tempfile.mkdtemp(prefix=f"kb{pages}-"))
            build_pdf(folder / "catalogue.pdf", pages)
            with session_scope() as session:
                report = build_index(session, folder, force=True)
                context = reply_context(session, message_id, history_limit=20, business_name="Bench",
                                        current_datetime="сейчас", working_hours="пн–пт, 10:00–18:00",
                                        kb_budget=settings.kb_token_budget)
            assert context is not None
            answer = client.generate(context.contents, system_instruction=context.system_instruction)
            figures[f"pages_{pages}"] = answer.usage.prompt_tokens
            knowledge = context.system_instruction.split(KB_START)[1].split(KB_END)[0]
            print(f"{pages:>3} pages: {report.chunks:>4} chunks in the index; the prompt carries "
                  f"{estimate_tokens(knowledge):>5} tokens of knowledge (budget {settings.kb_token_budget}); "
                  f"prompt tokens counted by the model: {answer.usage.prompt_tokens}")
        assert context is not None
        instructions = estimate_tokens(context.system_instruction.split(KB_START)[0])
        print(f"ceiling: budget {settings.kb_token_budget} + instructions ~{instructions} + conversation "
              f"~{conversation_tokens} tokens")
    finally:
        bench.close()
    print(f"machine: {machine()}")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
