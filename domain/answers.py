"""What a short customer answer means: yes, no, maybe, opt-out. Whole words, no I/O.

A short exact answer decides at once; anything longer or mixed returns None, and the caller
asks the model.
"""

from __future__ import annotations

import re

WORD = re.compile(r"[a-zа-я0-9]+")

YES = frozenset({
    "да", "ага", "угу", "ок", "окей", "ok", "okay", "yes", "давайте", "давай", "хорошо", "согласен",
    "согласна", "конечно", "беру", "договорились", "подходит", "отлично", "хочу", "оформляйте",
    "да давайте", "да хорошо", "да конечно", "да беру", "да хочу", "да подходит", "хорошо давайте",
    "давайте оформим", "да согласен", "да согласна",
})
NO = frozenset({
    "нет", "неа", "no", "не надо", "не нужно", "не интересно", "неинтересно", "нет спасибо",
    "спасибо нет", "не актуально", "неактуально", "уже не надо", "уже не нужно", "не хочу",
    "нет не надо", "нет не нужно", "отказываюсь",
})
MAYBE = frozenset({
    "подумаю", "я подумаю", "посмотрю", "я посмотрю", "возможно", "может быть", "может", "наверное",
    "позже", "потом", "не знаю", "пока не знаю", "надо подумать", "подумаю спасибо", "спасибо подумаю",
    "спасибо я подумаю", "я подумаю и напишу", "подумаю и напишу", "посмотрим",
})
OPT_OUT_PHRASES = (
    "стоп", "stop", "unsubscribe", "отписаться", "отпишитесь", "отпишите", "отписка",
    "не пишите", "не пишите мне", "больше не пишите", "хватит писать", "перестаньте писать",
    "не присылайте", "удалите мой номер", "уберите меня из рассылки",
)


def normalize(text: str) -> str:
    """Lower case, ё as е, punctuation and emoji dropped, words separated by single spaces."""
    return " ".join(WORD.findall(text.lower().replace("ё", "е")))


def short_answer(text: str) -> str | None:
    """"yes", "no" or "maybe" for a short exact answer; None when the model must decide."""
    normalized = normalize(text)
    if normalized in YES:
        return "yes"
    if normalized in NO:
        return "no"
    if normalized in MAYBE:
        return "maybe"
    return None


def is_opt_out(text: str) -> bool:
    """"стоп", "STOP!", "Не пишите мне больше", "отпишитесь пожалуйста" and close variants."""
    normalized = normalize(text)
    if not normalized:
        return False
    words = normalized.split()
    if len(words) > 8:  # a long message that mentions "стоп" is a conversation, not an opt-out
        return False
    padded = f" {normalized} "
    return any(f" {phrase} " in padded for phrase in OPT_OUT_PHRASES)
