"""Generate the sample knowledge bases: PDFs for fictional businesses, in Russian.

    python -m kb.sample [--business bakery|flowers] [--pages N] [--out PATH]

The shipped `kb/docs/sweet_almaty.pdf` (an Almaty bakery, the default) and
`kb/examples/flowers/astra_flowers.pdf` (an Astana flower shop, `--business flowers`: a second
business with facts of its own, for a profile with its own KB_DIR) were made with this. `--pages`
repeats the catalogue with numbered variations to make bigger knowledge bases for the token
benchmark. Needs fpdf2 (a dev dependency) and a Unicode TTF font (DejaVu Sans;
`apt-get install fonts-dejavu-core`).
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
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

FLOWERS_TITLE = "Цветочная лавка «Астра»"

FLOWERS_SECTIONS: list[tuple[str, list[str]]] = [
    ("О компании", [
        "Цветочная лавка «Астра» собирает букеты и цветочные композиции в Астане с 2019 года.",
        "Адрес: Астана, улица Кенесары, 40. Работаем ежедневно с 08:00 до 22:00, без выходных.",
        "Телефон и WhatsApp: +7 702 111 22 33. Флористы отвечают на сообщения с 08:00 до 21:00.",
    ]),
    ("Букеты и цены", [
        "Букет «Весна», 25 роз — 18 500 ₸.",
        "Букет «Нежность», 15 кустовых пионовидных роз — 14 900 ₸.",
        "Моно-букет из 51 красной розы — 39 000 ₸.",
        "Тюльпаны, 25 штук (сезон с февраля по май) — 12 500 ₸.",
        "Пионы, 9 штук (сезон с мая по июль) — 21 000 ₸.",
        "Композиция в шляпной коробке «Астра» — от 16 000 ₸.",
        "Корзина с хризантемами и эвкалиптом — 24 000 ₸.",
        "Открытка с вашим текстом — 700 ₸. Упаковка в крафт или плёнку — бесплатно.",
    ]),
    ("Заказ и оплата", [
        "Букет из наличия соберём за 30 минут; букет к точному времени — заказ накануне до 20:00.",
        "Оплата: Kaspi, банковская карта или наличные курьеру.",
        "На 8 Марта и 14 февраля заказы принимаем со 100 % предоплатой.",
        "Если цветы не понравились при получении, заменим букет в тот же день.",
    ]),
    ("Доставка", [
        "Доставка по Астане — 2 000 ₸, бесплатно при заказе от 30 000 ₸.",
        "Доставка в Косшы и Талапкер — 3 500 ₸.",
        "Доставляем ежедневно с 09:00 до 22:00, срочная доставка за 90 минут — 3 000 ₸.",
        "Фото букета отправляем в WhatsApp перед выездом курьера.",
        "Самовывоз из лавки на улице Кенесары, 40 — бесплатно.",
    ]),
    ("Частые вопросы", [
        "Вопрос: Сколько простоит букет? Ответ: Розы — 7–10 дней, если каждый день менять воду "
        "и подрезать стебли.",
        "Вопрос: Можно доставить анонимно? Ответ: Да, курьер не назовёт отправителя.",
        "Вопрос: Есть ли скидки? Ответ: Скидка 5 % на второй заказ в течение месяца.",
    ]),
]


@dataclass(frozen=True)
class Business:
    title: str
    sections: list[tuple[str, list[str]]]
    out: Path  # where the shipped PDF lives


HERE = Path(__file__).resolve().parent
BUSINESSES = {
    "bakery": Business(TITLE, SECTIONS, HERE / "docs" / "sweet_almaty.pdf"),
    "flowers": Business(FLOWERS_TITLE, FLOWERS_SECTIONS, HERE / "examples" / "flowers" / "astra_flowers.pdf"),
}


def font_path() -> str:
    for candidate in FONT_CANDIDATES:
        if candidate and Path(candidate).is_file():
            return candidate
    raise SystemExit("no Unicode TTF font found: set KB_FONT or apt-get install fonts-dejavu-core")


def build_pdf(out: Path, pages: int = 1, business: str = "bakery") -> Path:
    from fpdf import FPDF  # dev dependency: only this generator needs it

    catalogue = BUSINESSES[business]
    pdf = FPDF(format="A4")
    pdf.add_font("DejaVu", fname=font_path())
    pdf.set_auto_page_break(auto=True, margin=15)
    for page in range(pages):
        pdf.add_page()
        pdf.set_font("DejaVu", size=16)
        suffix = "" if page == 0 else f" — каталог, часть {page + 1}"
        pdf.multi_cell(0, 9, catalogue.title + suffix, new_x="LMARGIN", new_y="NEXT")
        for title, lines in catalogue.sections:
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
    parser.add_argument("--business", choices=sorted(BUSINESSES), default="bakery")
    parser.add_argument("--pages", type=int, default=1)
    parser.add_argument("--out", type=Path, help="default: the business's shipped PDF")
    args = parser.parse_args()
    print(build_pdf(args.out or BUSINESSES[args.business].out, args.pages, args.business))


if __name__ == "__main__":
    main()
