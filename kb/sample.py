"""Generate the sample knowledge base: a PDF for a fictional Almaty bakery, in Russian.

    python -m kb.sample [--pages N] [--out kb/docs/sweet_almaty.pdf]

The shipped `kb/docs/sweet_almaty.pdf` was made with this. `--pages` repeats the catalogue with
numbered variations to make bigger knowledge bases for the token benchmark. Needs fpdf2 (a dev
dependency) and a Unicode TTF font (DejaVu Sans; `apt-get install fonts-dejavu-core`).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

FONT_CANDIDATES = (
    os.environ.get("KB_FONT", ""),
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
)

TITLE = "Кондитерская «Сладкий Алматы»"

SECTIONS: list[tuple[str, list[str]]] = [
    ("О компании", [
        "Кондитерская «Сладкий Алматы» печёт торты и десерты на заказ с 2016 года.",
        "Адрес: Алматы, проспект Абая, 150. Работаем ежедневно с 09:00 до 21:00.",
        "Телефон и WhatsApp: +7 701 000 00 00. Менеджеры отвечают в будни с 10:00 до 18:00.",
    ]),
    ("Продукция и цены", [
        "Торт «Медовик», 1 кг — 9 900 ₸.",
        "Торт «Наполеон», 1 кг — 10 500 ₸.",
        "Торт «Красный бархат», 1 кг — 12 900 ₸.",
        "Бенто-торт на 2 персоны (450 г) — 6 500 ₸.",
        "Свадебный торт от 3 ярусов — от 14 000 ₸ за 1 кг, минимальный вес 5 кг.",
        "Набор капкейков, 6 штук — 5 400 ₸.",
        "Макаронс, коробка 12 штук — 7 200 ₸.",
        "Надпись на торте — бесплатно. Фотопечать на сахарной бумаге — 2 500 ₸.",
    ]),
    ("Заказ и оплата", [
        "Торт на заказ принимаем минимум за 2 дня до даты праздника, свадебный — за 14 дней.",
        "Предоплата 50 % при оформлении заказа, остаток — при получении.",
        "Оплата: Kaspi, банковская карта или наличные.",
        "Отмена заказа без удержания предоплаты — не позднее чем за 48 часов.",
    ]),
    ("Доставка", [
        "Доставка по Алматы — 1 500 ₸, бесплатно при заказе от 25 000 ₸.",
        "Доставка в пригород (Каскелен, Талгар, Иргели) — 3 000 ₸.",
        "Доставляем ежедневно с 10:00 до 20:00, интервал доставки — 2 часа.",
        "Самовывоз из кондитерской на проспекте Абая, 150 — бесплатно.",
        "В другие города, в том числе в Астану, торты не доставляем.",
    ]),
    ("Наши преимущества", [
        "Только натуральные сливки, масло 82,5 % и бельгийский шоколад.",
        "Без консервантов: срок хранения тортов — 72 часа в холодильнике.",
        "Дегустационный сет из 4 вкусов для свадеб — 4 000 ₸, стоимость вычитается из заказа.",
        "Есть торты без сахара и без глютена — по предварительному заказу.",
    ]),
    ("Частые вопросы", [
        "Вопрос: Можно ли заказать торт на завтра? Ответ: Обычно нет, нужен минимум 2 дня; "
        "иногда есть готовые торты на витрине — уточните у менеджера.",
        "Вопрос: Есть ли скидки? Ответ: Именинникам скидка 10 % по удостоверению личности "
        "в течение 3 дней до и после дня рождения.",
        "Вопрос: Делаете ли вы торты по фото? Ответ: Да, по фото или эскизу клиента; "
        "стоимость декора рассчитывает кондитер.",
        "Вопрос: Как хранить торт? Ответ: В холодильнике при +2…+6 °C, не дольше 72 часов.",
    ]),
]


def font_path() -> str:
    for candidate in FONT_CANDIDATES:
        if candidate and Path(candidate).is_file():
            return candidate
    raise SystemExit("no Unicode TTF font found: set KB_FONT or apt-get install fonts-dejavu-core")


def build_pdf(out: Path, pages: int = 1) -> Path:
    from fpdf import FPDF  # dev dependency: only this generator needs it

    pdf = FPDF(format="A4")
    pdf.add_font("DejaVu", fname=font_path())
    pdf.set_auto_page_break(auto=True, margin=15)
    for page in range(pages):
        pdf.add_page()
        pdf.set_font("DejaVu", size=16)
        suffix = "" if page == 0 else f" — каталог, часть {page + 1}"
        pdf.multi_cell(0, 9, TITLE + suffix, new_x="LMARGIN", new_y="NEXT")
        for title, lines in SECTIONS:
            pdf.set_font("DejaVu", size=13)
            pdf.multi_cell(0, 8, title, new_x="LMARGIN", new_y="NEXT")
            pdf.set_font("DejaVu", size=10)
            for line in lines:
                if page:  # bigger bases: numbered variations, so chunks are not identical
                    line = f"[{page + 1}.{len(line) % 97}] {line}"
                pdf.multi_cell(0, 5.5, line, new_x="LMARGIN", new_y="NEXT")
        if pages == 1:
            break
    out.parent.mkdir(parents=True, exist_ok=True)
    pdf.output(str(out))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "docs" / "sweet_almaty.pdf")
    args = parser.parse_args()
    print(build_pdf(args.out, args.pages))


if __name__ == "__main__":
    main()
