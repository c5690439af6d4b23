"""What a short customer answer means: yes, no, maybe, opt-out. Whole words, no I/O.

A short exact answer decides at once; anything longer or mixed returns None, and the caller
asks the model.
"""

from __future__ import annotations

import re

WORD = re.compile(r"[^\W_]+")  # letters and digits of any script (Kazakh too)

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
# A message opts out at once only when, after dropping politeness words, it is exactly one of
# these (or one typo away from a long one), and it is not a question. Anything longer that merely
# mentions stopping ("Стоп, а сколько стоит доставка?") is a conversation: the sales agent's answer
# says whether it opts out.
OPT_OUT_EXACT = frozenset({
    "стоп", "stop", "unsubscribe", "отписаться", "отпишитесь", "отпишите", "отпишите меня", "отписка",
    "отпишитесь от рассылки", "отпишите меня от рассылки", "не пишите", "не пишите мне", "больше не пишите",
    "больше не пишите мне", "не пишите мне больше", "мне больше не пишите", "хватит писать", "хватит мне писать",
    "перестаньте писать", "перестаньте мне писать", "не присылайте", "не присылайте мне", "не беспокойте",
    "не беспокойте меня", "удалите мой номер", "уберите меня из рассылки", "уберите меня из списка",
    "stop messaging me", "stop texting me", "stop writing to me", "do not text me", "dont text me",
    "do not message me", "dont message me", "stop sending", "unsubscribe me",
    "жазбаңыз", "маған жазбаңыз", "маған енді жазбаңыз", "енді жазбаңыз", "тоқтатыңыз",
})
POLITENESS = frozenset({"пожалуйста", "пж", "пжл", "плиз", "please", "pls", "plz", "спасибо", "спс", "thanks",
                        "өтінемін", "рахмет"})
FUZZY_MIN_CHARS = 10  # a typo is forgiven only in a long form: "стол" is not "стоп"
QUESTION_MARKS = ("?", "？", "¿")  # "Больше не пишите?" asks; the model decides
# A swap to or from "й" is not a typo: it turns the imperative into a statement ("не присылайте" ->
# "не присылаете" "you don't send", "не беспокойте" -> "не беспокоите" "you aren't bothering").
NOT_A_TYPO = frozenset("й")
# Latin letters that look Cyrillic, inside a word that has Cyrillic letters ("нe" with a Latin e).
HOMOGLYPHS = str.maketrans("aceopxykmtbh", "асеорхукмтвн")
CYRILLIC = re.compile(r"[а-яәғқңөұүһі]")


def normalize(text: str) -> str:
    """Lower case, ё as е, punctuation and emoji dropped, words separated by single spaces."""
    words = WORD.findall(text.lower().replace("ё", "е"))
    return " ".join(word.translate(HOMOGLYPHS) if CYRILLIC.search(word) else word for word in words)


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


def _one_edit_apart(first: str, second: str) -> bool:
    """True when one letter inserted, deleted or replaced turns `first` into `second`; replacing a letter
    of NOT_A_TYPO, or by one, does not count."""
    if abs(len(first) - len(second)) > 1:
        return False
    if len(first) > len(second):
        first, second = second, first
    for index, (left, right) in enumerate(zip(first, second, strict=False)):
        if left != right:
            if len(first) == len(second) and (left in NOT_A_TYPO or right in NOT_A_TYPO):
                return False
            tail = index + 1 if len(first) == len(second) else index
            return first[tail:] == second[index + 1:]
    return True


def is_opt_out(text: str) -> bool:
    """A short exact opt-out: "стоп", "STOP!", "Не пишите мне больше", "отпишитесь, пожалуйста", "Маған
    жазбаңыз", with punctuation, case, ё and a typo in a long form forgiven. False for anything else,
    which the sales agent's answer judges (its `opt_out` field). A question never opts out at once."""
    if any(mark in text for mark in QUESTION_MARKS):
        return False
    words = [word for word in normalize(text).split() if word not in POLITENESS]
    deduplicated = [word for index, word in enumerate(words) if index == 0 or word != words[index - 1]]
    phrase = " ".join(deduplicated)
    if not phrase:
        return False
    if phrase in OPT_OUT_EXACT:
        return True
    return len(phrase) >= FUZZY_MIN_CHARS and any(
        len(form) >= FUZZY_MIN_CHARS and _one_edit_apart(phrase, form) for form in OPT_OUT_EXACT)
