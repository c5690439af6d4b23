"""Demo heuristics, not a model: keyword rules that make the emulator's default answers look
plausible in the demo and in tests that do not script an answer.

They read only the customer's texts and the parts of the system instruction the product marks
on purpose (`prompts.markers`: the knowledge base and the offered call slots), never the prompt's
prose, so rewording a prompt changes nothing here. A test that needs another answer scripts it
(``/_emulator/script``) instead of tuning these word lists.
"""

from __future__ import annotations

import re

from prompts.markers import KB_END, KB_START, SLOTS_PREFIX

LONG_WORD = re.compile(r"[^\W\d_]{4,}")
WORD = re.compile(r"\w+")
ISO_DATETIME = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2})?([+-]\d{2}:\d{2}|Z)?")
MAX_EXCERPT_CHARS = 60
MAX_GROUNDING_CHARS = 200

# A customer text with one of these is a lead; with one of NON_LEAD_WORDS (and none of these) not.
LEAD_WORDS = (
    "цена", "цены", "стоимост", "сколько", "купить", "заказ", "доставк", "прайс",
    "интересует", "хочу", "записаться", "оплат", "скидк",
)  # fmt: skip
NON_LEAD_WORDS = (
    "реклам", "поставщик", "сотрудничеств", "мам", "друг", "как дела", "спам", "вакансия",
)  # fmt: skip
YES_WORDS = frozenset({"да", "давайте", "согласен", "согласна", "хорошо", "ок", "окей", "ok"})
NO_PHRASES = ("не надо", "не интересно", "не интересует", "неинтересно", "не нужно")
# `opt_out` is true when the last customer text asks us to stop writing (one of these) and is
# not a question or a purchase ("Стоп, а сколько стоит доставка?" is false).
OPT_OUT_CUES = (
    "не пишите мне", "мне не пишите", "больше не пишите", "не пишите больше", "отпишите", "отписаться",
    "хватит писать", "хватит мне писать", "перестаньте писать", "не беспокойте", "удалите мой номер",
    "уберите меня", "unsubscribe", "stop messaging", "stop texting", "stop writing", "жазбаңыз",
)  # fmt: skip
# How an enum of a yes/no schema may spell each decision.
DECISION_SYNONYMS = {
    "yes": ("yes", "да", "agree", "accept", "accepted", "true", "y"),
    "no": ("no", "нет", "decline", "declined", "reject", "rejected", "false", "n"),
    "unclear": ("unclear", "unknown", "maybe", "неясно", "не ясно", "other"),
}


def normalize(text: str) -> str:
    return text.lower().replace("ё", "е")


def _excerpt(text: str) -> str:
    flat = " ".join(text.split())
    if len(flat) <= MAX_EXCERPT_CHARS:
        return flat
    return flat[: MAX_EXCERPT_CHARS - 1].rstrip() + "…"


def _stems(text: str) -> set[str]:
    """Crude Russian stemming: the first five letters of each long word ("доставку" ~ "доставка")."""
    return {word[:5] for word in LONG_WORD.findall(normalize(text))}


def knowledge_block(system_text: str) -> str:
    """The knowledge-base part of a system instruction (between the markers), or ""."""
    start = system_text.find(KB_START)
    if start < 0:
        return ""
    end = system_text.find(KB_END, start)
    return system_text[start + len(KB_START) : end if end >= 0 else None]


def grounding_line(system_text: str, question: str) -> str | None:
    """The knowledge-base line sharing most word stems with the question (first on ties)."""
    question_words = _stems(question)
    best_line, best_score = None, 0
    for raw_line in knowledge_block(system_text).splitlines():
        line = raw_line.strip().lstrip("-*•").strip()
        score = len(_stems(line) & question_words)
        if score > best_score:
            best_line, best_score = line, score
    if best_line is None:
        return None
    if len(best_line) > MAX_GROUNDING_CHARS:
        return best_line[: MAX_GROUNDING_CHARS - 1].rstrip() + "…"
    return best_line


def offered_slots(system_text: str) -> str | None:
    """The call slots the product offers (the line after the slots marker), if any."""
    for raw_line in system_text.splitlines():
        if raw_line.strip().startswith(SLOTS_PREFIX):
            return raw_line.strip()[len(SLOTS_PREFIX) :].strip()
    return None


def sales_reply(question: str, system_text: str) -> str:
    """A polite, deterministic Russian reply that imitates grounding in the knowledge base."""
    excerpt = _excerpt(question)
    if not excerpt:
        return "Здравствуйте! Спасибо за сообщение. Чем могу помочь?"
    sentences = ["Здравствуйте!", f"Вы спросили: «{excerpt}»."]
    line = grounding_line(system_text, question)
    if line:
        end = "" if line.endswith((".", "!", "?", "…")) else "."
        sentences.append(f"По нашим данным: {line}{end}")
    slots = offered_slots(system_text)
    if slots is not None:
        sentences.append(f"Это время не подходит, могу предложить созвон: {slots}.")
    sentences.append("Чем ещё могу помочь?")
    return " ".join(sentences)


def detect_lead(user_text: str) -> tuple[bool | None, float, str]:
    """Keyword lead detector: (is_client, confidence, reasoning)."""
    text = normalize(user_text)
    for word in LEAD_WORDS:
        if word in text:
            return True, 0.9, f"Клиент интересуется покупкой: в сообщении есть «{word}»."
    for word in NON_LEAD_WORDS:
        if word in text:
            return False, 0.85, f"Сообщение не похоже на обращение клиента: найдено «{word}»."
    return None, 0.5, "Недостаточно признаков, чтобы понять, клиент ли это."


def detect_opt_out(text: str) -> bool:
    """Whether the customer asks us to stop writing (see OPT_OUT_CUES)."""
    flat = " ".join(WORD.findall(normalize(text)))
    if "?" in text or any(word in flat for word in LEAD_WORDS):
        return False
    return any(cue in flat for cue in OPT_OUT_CUES)


def detect_decision(text: str) -> str:
    """Classify a reply to a yes/no question as "yes", "no" or "unclear"."""
    joined = f" {' '.join(WORD.findall(normalize(text)))} "
    joined = joined.replace(" нет проблем ", " ок ").replace(" без проблем ", " ок ")  # idioms for yes
    tokens = joined.split()
    if "нет" in tokens or any(f" {phrase} " in joined for phrase in NO_PHRASES):
        return "no"
    if YES_WORDS.intersection(tokens):
        return "yes"
    return "unclear"


def requested_call(text: str) -> str | None:
    """The call time a customer text names, as ISO 8601 (``2026-12-01T15:30``), if it names one."""
    match = ISO_DATETIME.search(text)
    return match.group(0).replace(" ", "T") if match else None
