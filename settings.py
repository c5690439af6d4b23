"""The one place that reads the environment: every setting, its default and its validation.

`get_settings()` parses `os.environ` once per process. A missing or malformed value raises
`SettingsError` naming the variable, and the entry points turn that into a clean exit.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import Field, dataclass, field, fields
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cryptography.fernet import Fernet

from domain.phones import normalize_phone

ROOT = Path(__file__).resolve().parent
# A PostgreSQL on this host, as REDIS_URL's default is a Redis on it (`make demo` runs an embedded one).
DEFAULT_DATABASE_URL = "postgresql+psycopg2://assistant@127.0.0.1:5432/assistant"
PROFILE_ID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}$")


class SettingsError(Exception):
    """A setting is missing or malformed; the message names the variable."""


def _text(raw: str) -> str:
    return raw.strip()


def _positive_int(raw: str) -> int:
    value = int(raw)
    if value <= 0:
        raise ValueError("must be a positive integer")
    return value


def _non_negative_float(raw: str) -> float:
    value = float(raw)
    if value < 0:
        raise ValueError("must be zero or more")
    return value


def _url(raw: str) -> str:
    value = raw.strip().rstrip("/")
    if not re.match(r"^https?://[^\s/]+", value):
        raise ValueError("must be an http(s) URL")
    return value


def _postgres_url(raw: str) -> str:
    value = raw.strip()
    if not re.match(r"^postgresql(\+\w+)?://", value):
        raise ValueError("must be a PostgreSQL URL, e.g. postgresql+psycopg2://user:password@host:5432/name")
    return value


def _redis_url(raw: str) -> str:
    value = raw.strip()
    if not re.match(r"^(redis|rediss|unix)://", value):
        raise ValueError("must start with redis://, rediss:// or unix://")
    return value


def _profile_id(raw: str) -> str:
    value = raw.strip()
    if not PROFILE_ID_RE.match(value):
        raise ValueError("must look like 8+4 hex digits, e.g. 71ad40e9-b023")
    return value


def _timezone(raw: str) -> str:
    try:
        ZoneInfo(raw.strip())
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {raw!r}") from exc
    return raw.strip()


def _unit_interval(raw: str) -> float:
    value = float(raw)
    if not 0.0 <= value <= 1.0:
        raise ValueError("must be between 0 and 1")
    return value


WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def _weekdays(raw: str) -> tuple[int, ...]:
    """`mon-fri` or `mon,wed,fri` -> weekday numbers (Monday = 0)."""
    days: set[int] = set()
    for part in raw.strip().lower().split(","):
        if "-" in part:
            first, last = (WEEKDAYS.index(item.strip()) for item in part.split("-", 1))
            if last < first:
                raise ValueError(f"range {part!r} runs backwards")
            days.update(range(first, last + 1))
        elif part.strip():
            days.add(WEEKDAYS.index(part.strip()))
    if not days:
        raise ValueError("names no day")
    return tuple(sorted(days))


def _hours(raw: str) -> tuple[int, int]:
    """`10:00-18:00` -> minutes after midnight (600, 1080)."""
    match = re.match(r"^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$", raw)
    if not match:
        raise ValueError("must look like 10:00-18:00")
    start = int(match.group(1)) * 60 + int(match.group(2))
    end = int(match.group(3)) * 60 + int(match.group(4))
    if not 0 <= start < end <= 24 * 60:
        raise ValueError("the start must come before the end, within one day")
    return start, end


def _intervals(raw: str) -> tuple[int, ...]:
    values = tuple(int(item) for item in raw.replace(" ", "").split(",") if item)
    if not values or any(value <= 0 for value in values) or list(values) != sorted(set(values)):
        raise ValueError("must be increasing positive hours, e.g. 24,72,168,336,720")
    return values


def _rate_ladder(raw: str) -> tuple[int, ...]:
    """`3,6,10,15` -> sends per minute allowed on a new profile's first, second, ... day."""
    values = tuple(int(item) for item in raw.replace(" ", "").split(",") if item)
    if any(value <= 0 for value in values) or list(values) != sorted(values):
        raise ValueError("must be non-decreasing positive sends per minute, one per day, e.g. 3,6,10,15")
    return values


def _updates_mode(raw: str) -> str:
    value = raw.strip().lower()
    if value not in {"poll", "webhook"}:
        raise ValueError("must be poll or webhook")
    return value


def _choice(*allowed: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        value = raw.strip().lower()
        if value not in allowed:
            raise ValueError(f"must be {' or '.join(allowed)}")
        return value
    return parse


def _run_path(raw: str) -> str:
    value = raw.strip()
    if not value.startswith("/") or "{agent_id}" not in value:
        raise ValueError("must be a path holding {agent_id}, e.g. /agents/{agent_id}/runs")
    return value


def _phone_list(raw: str) -> tuple[str, ...]:
    phones = tuple(normalize_phone(item) for item in raw.split(",") if item.strip())
    bad = [phone for phone in phones if not phone.isdigit() or len(phone) < 7]
    if bad:
        raise ValueError(f"not phone numbers: {', '.join(bad)}")
    return phones


def _rate(raw: str) -> str:
    value = raw.strip()
    if not re.match(r"^\d+(\.\d+)?/[smh]$", value):
        raise ValueError("must look like 300/m, 5/s or 1000/h")
    return value


def _log_level(raw: str) -> str:
    value = raw.strip().upper()
    if value not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
        raise ValueError("must be DEBUG, INFO, WARNING or ERROR")
    return value


def _boolean(raw: str) -> bool:
    value = raw.strip().lower()
    if value not in {"true", "false", "1", "0", "yes", "no"}:
        raise ValueError("must be true or false")
    return value in {"true", "1", "yes"}


def _name_list(raw: str) -> tuple[str, ...]:
    """`a, b,c` -> ("a", "b", "c"): a comma-separated list, blanks dropped."""
    return tuple(item.strip() for item in raw.split(",") if item.strip())


MCP_SCOPES = ("read", "write", "admin")


def _mcp_scopes(raw: str) -> tuple[str, ...]:
    scopes = _name_list(raw)
    unknown = [scope for scope in scopes if scope not in MCP_SCOPES]
    if unknown or not scopes:
        raise ValueError(f"must be scopes out of {', '.join(MCP_SCOPES)}"
                         + (f"; unknown: {', '.join(unknown)}" if unknown else ""))
    return scopes


USER_NAME_RE = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")
PASSWORD_HASH_RE = re.compile(r"^scrypt:\d+:\d+:\d+:[A-Za-z0-9_-]+:[A-Za-z0-9_-]+$")


def _users(raw: str) -> tuple[tuple[str, str], ...]:
    """`name:scrypt:…,name2:scrypt:…` (lines printed by `python -m web.users add NAME`) -> ((name,
    hash), ...). The error names the entry by position and user, never the hash."""
    users: dict[str, str] = {}
    for position, entry in enumerate((item.strip() for item in raw.replace("\n", ",").split(",")), start=1):
        if not entry:
            continue
        name, _, password_hash = entry.partition(":")
        if not USER_NAME_RE.match(name):
            raise ValueError(f"entry {position}: a user name is 1-64 letters, digits or _.@-")
        if not PASSWORD_HASH_RE.match(password_hash):
            raise ValueError(f"entry {position} ({name}): not a password hash; make one with "
                             "`python -m web.users add NAME`")
        if name in users:
            raise ValueError(f"user {name} is listed twice")
        users[name] = password_hash
    return tuple(users.items())


def _model_prices(raw: str) -> tuple[tuple[str, float, float], ...]:
    """`model=input/output,...` in USD per million tokens -> ((model, input, output), ...)."""
    prices = []
    for entry in (item.strip() for item in raw.split(",")):
        if not entry:
            continue
        match = re.match(r"^([^=\s]+)\s*=\s*(\d+(?:\.\d+)?)\s*/\s*(\d+(?:\.\d+)?)$", entry)
        if not match:
            raise ValueError(f"{entry!r} must look like gemini-3.5-flash=0.30/2.50 (USD per million input/output "
                             "tokens)")
        prices.append((match.group(1), float(match.group(2)), float(match.group(3))))
    return tuple(prices)


def _fernet_keys(raw: str) -> str:
    """One or more comma-separated Fernet keys (the first encrypts, all decrypt). The error never
    repeats the value: it is a secret."""
    keys = [item.strip() for item in raw.split(",") if item.strip()]
    if not keys:
        raise ValueError("names no key")
    for position, key in enumerate(keys, start=1):
        try:
            Fernet(key)
        except ValueError:
            raise ValueError(f"key {position} is not a Fernet key (32 url-safe base64 bytes; make one with "
                             "python -c 'from cryptography.fernet import Fernet; "
                             "print(Fernet.generate_key().decode())')") from None
    return ",".join(keys)


def _setting(env: str, parse: Callable[[str], Any], default: Any = None, *, required: bool = False,
             secret: bool = False, help: str = "") -> Any:
    # A secret stays out of the dataclass repr too, so a logged Settings shows none.
    return field(default=default, repr=not secret,
                 metadata={"env": env, "parse": parse, "required": required, "secret": secret, "help": help})


@dataclass(frozen=True)
class Settings:
    # Wappi
    wappi_token: str = _setting("WAPPI_TOKEN", _text, required=True, secret=True,
                                help="Wappi API token, sent raw in the Authorization header")
    wappi_profile_id: str = _setting("WAPPI_PROFILE_ID", _profile_id, required=True,
                                     help="the first Wappi profile (8+4 hex digits)")
    wappi_base_url: str = _setting("WAPPI_BASE_URL", _url, "https://wappi.pro",
                                   help="Wappi API base URL; the emulator's URL in the demo and tests")
    wappi_timeout: float = _setting("WAPPI_TIMEOUT", _non_negative_float, 20.0,
                                    help="seconds before a Wappi call is abandoned")
    profile_name: str = _setting("PROFILE_NAME", _text, "Main",
                                 help="display name of the first profile")
    # Gemini
    gemini_api_key: str = _setting("GEMINI_API_KEY", _text, required=True, secret=True,
                                   help="Gemini API key")
    gemini_base_url: str = _setting("GEMINI_BASE_URL", _url, "",
                                    help="Gemini base URL; empty means Google's, the emulator's in tests")
    gemini_api_version: str = _setting("GEMINI_API_VERSION", _text, "v1beta",
                                       help="Gemini API version path")
    gemini_model: str = _setting("GEMINI_MODEL", _text, "gemini-3.8-flash",
                                 help="model for the sales agent's replies")
    gemini_classify_model: str = _setting("GEMINI_CLASSIFY_MODEL", _text, "gemini-3.5-flash-lite",
                                          help="model for lead classification")
    gemini_transcribe_model: str = _setting("GEMINI_TRANSCRIBE_MODEL", _text, "gemini-3.5-flash",
                                            help="model for voice-note transcription")
    model_rate_limit: str = _setting("MODEL_RATE_LIMIT", _rate, "300/m",
                                     help="model-calling tasks a worker may start, e.g. 300/m (per worker)")
    gemini_timeout_ms: int = _setting("GEMINI_TIMEOUT_MS", _positive_int, 60_000,
                                      help="milliseconds before a Gemini call is abandoned")
    # Storage
    database_url: str = _setting("DATABASE_URL", _postgres_url, DEFAULT_DATABASE_URL,
                                 help="SQLAlchemy URL of the PostgreSQL database")
    redis_url: str = _setting("REDIS_URL", _redis_url, "redis://127.0.0.1:6379/0",
                              help="Redis for the Celery broker, locks and limits")
    redbeat_redis_url: str = _setting("REDBEAT_REDIS_URL", _redis_url, "",
                                      help="Redis for the beat schedule; empty means REDIS_URL")
    # Behaviour
    timezone: str = _setting("BUSINESS_TIMEZONE", _timezone, "Asia/Almaty",
                             help="the business's time zone (working hours, stats)")
    business_name: str = _setting("BUSINESS_NAME", _text, "Наша компания",
                                  help="how the assistant names the business to customers")
    poll_interval: float = _setting("POLL_INTERVAL", _non_negative_float, 5.0,
                                    help="seconds between Wappi polls")
    kb_dir: str = _setting("KB_DIR", _text, str(ROOT / "kb" / "docs"),
                           help="folder of the knowledge base's PDF files")
    kb_token_budget: int = _setting("KB_TOKEN_BUDGET", _positive_int, 3000,
                                    help="most tokens of knowledge given to the model per reply")
    classify_min_messages: int = _setting("CLASSIFY_MIN_MESSAGES", _positive_int, 3,
                                          help="messages before an undecided contact's verdict counts")
    classify_min_confidence: float = _setting("CLASSIFY_MIN_CONFIDENCE", _unit_interval, 0.8,
                                              help="confidence that counts at once, with fewer messages")
    answer_undecided: bool = _setting("ANSWER_UNDECIDED", _boolean, True,
                                      help="answer a contact the moderator cannot yet classify, neutrally "
                                           "(false: wait for a verdict)")
    working_days: tuple[int, ...] = _setting("WORKING_DAYS", _weekdays, (0, 1, 2, 3, 4),
                                             help="days calls can be booked, e.g. mon-fri")
    working_hours: tuple[int, int] = _setting("WORKING_HOURS", _hours, (600, 1080),
                                              help="hours calls can be booked, e.g. 10:00-18:00")
    call_minutes: int = _setting("CALL_DURATION_MINUTES", _positive_int, 30,
                                 help="length of a booked call; it must end within working hours")
    follow_up_intervals: tuple[int, ...] = _setting(
        "FOLLOW_UP_INTERVALS", _intervals, (24, 72, 168, 336, 720),
        help="hours after our unanswered reply at which the follow-up touches are due")
    max_audio_bytes: int = _setting("MAX_AUDIO_BYTES", _positive_int, 15 * 1024 * 1024,
                                    help="voice notes larger than this are not sent to the model")
    voice_fallback_text: str = _setting(
        "VOICE_FALLBACK_TEXT", _text,
        "Извините, не получилось разобрать голосовое сообщение. Напишите, пожалуйста, текстом — ответим сразу.",
        help="what a customer gets when their voice note can't be transcribed")
    batch_window: float = _setting("BATCH_WINDOW", _non_negative_float, 9.0,
                                   help="seconds after a customer's last message before the burst is answered")
    batch_max_messages: int = _setting("BATCH_MAX_MESSAGES", _positive_int, 10,
                                       help="a burst this long is answered at once")
    batch_max_wait: float = _setting("BATCH_MAX_WAIT", _non_negative_float, 60.0,
                                     help="seconds from a burst's first message after which it is answered anyway")
    human_pause_hours: float = _setting("HUMAN_PAUSE", _non_negative_float, 12.0,
                                        help="hours the bot steps back after a human answers from the phone")
    whitelist: tuple[str, ...] = _setting("WHITELIST", _phone_list, (),
                                          help="comma-separated numbers the bot ignores, seeded per profile")
    stale_after_minutes: float = _setting("STALE_AFTER", _non_negative_float, 10.0,
                                          help="minutes after which an unseen message is recorded, not answered")
    max_message_chars: int = _setting("MAX_MESSAGE_CHARS", _positive_int, 4000,
                                      help="a longer customer message is cut for the model, with a note")
    opt_out_confirmation: str = _setting(
        "OPT_OUT_CONFIRMATION", _text,
        "Хорошо, больше не будем вам писать. Если появятся вопросы — просто напишите нам.",
        help="the one message a customer gets after writing STOP")
    history_limit: int = _setting("HISTORY_LIMIT", _positive_int, 20,
                                  help="messages of a contact's history given to the model")
    send_rate_per_minute: int = _setting("SEND_RATE_PER_MINUTE", _positive_int, 20,
                                         help="messages a minute per Wappi profile, across all workers")
    send_burst: int = _setting("SEND_BURST", _positive_int, 3,
                               help="messages that may go out back to back within that rate")
    warmup_schedule: tuple[int, ...] = _setting(
        "WARMUP_SCHEDULE", _rate_ladder, (2, 4, 6, 10, 15),
        help="a new profile's send limit per minute on its 1st, 2nd, ... day (then SEND_RATE_PER_MINUTE); "
             "a profile added with --no-warmup, or the environment's own, skips it")
    proactive_daily_cap: int = _setting(
        "PROACTIVE_DAILY_CAP", _positive_int, 50,
        help="proactive messages (follow-up touches, MCP sends) a profile may send a day; over it they are held "
             "until an operator resumes (`celery -A tasks profiles resume-proactive`); replies are not capped")
    send_chat_gap_min: float = _setting("SEND_CHAT_GAP_MIN", _non_negative_float, 1.0,
                                        help="least seconds between two messages to one chat")
    send_chat_gap_max: float = _setting("SEND_CHAT_GAP_MAX", _non_negative_float, 3.0,
                                        help="most seconds of that random gap")
    reconcile_settle: float = _setting("RECONCILE_SETTLE", _non_negative_float, 15.0,
                                       help="seconds after an unclear send before the chat history is checked")
    reconcile_recheck: float = _setting("RECONCILE_RECHECK", _non_negative_float, 45.0,
                                        help="seconds after an unclear send of the second, last check before resending")
    hold_max_age: float = _setting("HOLD_MAX_AGE", _non_negative_float, 7200.0,
                                   help="seconds a held reply may wait for an offline profile, then a dead letter")
    hold_check_interval: float = _setting("HOLD_CHECK_INTERVAL", _non_negative_float, 30.0,
                                          help="seconds between status checks of a profile that cannot send")
    max_attempts: int = _setting("TASK_MAX_ATTEMPTS", _positive_int, 6,
                                 help="failed attempts of a task before it goes to the dead-letter table")
    webhook_secret: str = _setting("WEBHOOK_SECRET", _text, "", secret=True,
                                   help="shared secret Wappi sends with webhooks; empty disables the webhook")
    credentials_key: str = _setting("CREDENTIALS_KEY", _fernet_keys, "", secret=True,
                                    help="Fernet key(s) encrypting profile tokens in the database, comma-separated "
                                         "for rotation (the first encrypts); empty: only the environment's profile")
    reply_agent: str = _setting(
        "REPLY_AGENT", _choice("builtin", "agno"), "builtin",
        help="who writes the replies: builtin (the sales agent on Gemini) or agno (an external agent on Agno "
             "AgentOS at AGENT_BASE_URL); intake, STOP, pauses, the outbox and the send limit stay ours")
    agent_base_url: str = _setting("AGENT_BASE_URL", _url, "",
                                   help="the external agent platform's base URL (REPLY_AGENT=agno)")
    agent_id: str = _setting("AGENT_ID", _text, "sales-assistant", help="the external agent's id on the platform")
    agent_api_key: str = _setting("AGENT_API_KEY", _text, "", secret=True,
                                  help="the platform's key (Agno's OS_SECURITY_KEY), sent as a bearer token")
    agent_timeout: float = _setting("AGENT_TIMEOUT", _non_negative_float, 60.0,
                                    help="seconds to wait for the external agent's answer")
    agent_run_path: str = _setting(
        "AGENT_RUN_PATH", _run_path, "/agents/{agent_id}/runs",
        help="the run endpoint's path: /agents/{agent_id}/runs (AgentOS) or /v1/playground/agents/{agent_id}/runs "
             "(Agno 1.x)")
    follow_up_agent: str = _setting(
        "FOLLOW_UP_AGENT", _choice("builtin", "external"), "builtin",
        help="with REPLY_AGENT=agno, who writes follow-up touches: builtin (Gemini, from the stored "
             "conversation) or external (the agent, asked in the chat's session)")
    telegram_updates: str = _setting(
        "TELEGRAM_UPDATES", _updates_mode, "poll",
        help="how a Telegram bot profile gets its updates: poll (getUpdates, needs no public URL) or webhook "
             "(POST /webhooks/telegram/<profile>; set it with `celery -A tasks profiles webhook`)")
    telegram_base_url: str = _setting("TELEGRAM_BASE_URL", _url, "https://api.telegram.org",
                                      help="Telegram Bot API base URL; the emulator's URL in tests")
    web_port: int = _setting("WEB_PORT", _positive_int, 8000,
                             help="port of the web process (/dashboard, /health, /stats, the webhooks)")
    dashboard_users: tuple[tuple[str, str], ...] = _setting(
        "DASHBOARD_USERS", _users, (), secret=True,
        help="who may log in to /dashboard, /stats and /health (HTTP basic auth): comma-separated name:hash "
             "entries, each printed by `python -m web.users add NAME`; empty: nobody")
    model_prices: tuple[tuple[str, float, float], ...] = _setting(
        "MODEL_PRICES", _model_prices,
        (("gemini-3.8-flash", 0.30, 2.50), ("gemini-3.5-flash", 0.30, 2.50), ("gemini-3.5-flash-lite", 0.10, 0.40)),
        help="USD per million input/output tokens of each model, for the dashboard's estimated cost "
             "(model=input/output, comma-separated); a model not listed is counted as unpriced")
    # The MCP server (`python -m mcp_server`): what it exposes and to whom.
    mcp_tools: tuple[str, ...] = _setting(
        "MCP_TOOLS", _name_list, ("read",),
        help="tools the MCP server exposes: read (every read tool), +send_message, +pause_bot, +resume_bot, "
             "+replay_dead_letter; write tools not named are not registered; an unknown name stops it")
    mcp_stdio_scopes: tuple[str, ...] = _setting(
        "MCP_STDIO_SCOPES", _mcp_scopes, ("read",),
        help="scopes the MCP server acts with over stdio, where no token is sent (read, write, admin)")
    mcp_stdio_profiles: tuple[str, ...] = _setting(
        "MCP_STDIO_PROFILES", _name_list, (),
        help="profile ids the MCP server may see over stdio, comma-separated; empty: every profile")
    mcp_allowed_hosts: tuple[str, ...] = _setting(
        "MCP_ALLOWED_HOSTS", _name_list, ("127.0.0.1:*", "localhost:*"),
        help="Host headers the MCP HTTP server accepts (host:port, or host:* for any port), against DNS rebinding")
    mcp_allowed_origins: tuple[str, ...] = _setting(
        "MCP_ALLOWED_ORIGINS", _name_list, (),
        help="Origin headers (sent by browsers) the MCP HTTP server accepts; empty: none, agents send no Origin")
    mcp_port: int = _setting("MCP_PORT", _positive_int, 8770, help="port of the MCP server over HTTP")
    mcp_public_url: str = _setting(
        "MCP_PUBLIC_URL", _url, "http://127.0.0.1:8770/mcp",
        help="the MCP endpoint's URL as clients reach it (its OAuth protected-resource metadata names it)")
    log_dir: str = _setting("LOG_DIR", _text, "",
                            help="folder for a daily JSON log file kept 30 days; empty logs to stderr only")
    log_level: str = _setting("LOG_LEVEL", _log_level, "INFO", help="DEBUG, INFO, WARNING or ERROR")

    @property
    def effective_redbeat_url(self) -> str:
        return self.redbeat_redis_url or self.redis_url

    def redacted(self) -> dict[str, Any]:
        """The settings as a dict with secrets masked, safe to log."""
        out: dict[str, Any] = {}
        for item in fields(self):
            value = getattr(self, item.name)
            out[item.metadata["env"]] = "***" if item.metadata["secret"] and value else value
        return out


def setting_named(env_name: str) -> Field[Any]:
    """The settings field read from the variable `env_name`; KeyError when there is none."""
    for item in fields(Settings):
        if item.metadata["env"] == env_name:
            return item
    raise KeyError(env_name)


def _parse(item: Field[Any], raw: str) -> Any:
    try:
        return item.metadata["parse"](raw)
    except ValueError as exc:
        shown = "***" if item.metadata["secret"] else repr(raw)
        raise SettingsError(f"{item.metadata['env']}={shown} is invalid: {exc}") from None


def parse_setting(env_name: str, raw: str) -> Any:
    """`raw` parsed as the environment's value of `env_name` would be (per-profile settings use it),
    or SettingsError naming the variable."""
    return _parse(setting_named(env_name), raw)


def describe() -> list[tuple[str, str, Any, bool]]:
    """(variable, help, default, required) for every setting: the source of .env.example."""
    return [(item.metadata["env"], item.metadata["help"], item.default, item.metadata["required"])
            for item in fields(Settings)]


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    problems: list[str] = []
    for item in fields(Settings):
        name = item.metadata["env"]
        raw = env.get(name)
        if raw is None or raw.strip() == "":
            if item.metadata["required"]:
                problems.append(f"{name} is not set ({item.metadata['help']})")
            continue
        try:
            values[item.name] = _parse(item, raw)
        except SettingsError as exc:
            problems.append(str(exc))
    if problems:
        raise SettingsError("configuration error: " + "; ".join(problems))
    settings = Settings(**values)
    if settings.send_chat_gap_max < settings.send_chat_gap_min:
        raise SettingsError("configuration error: SEND_CHAT_GAP_MAX is smaller than SEND_CHAT_GAP_MIN")
    return settings


def database_url_only(environ: Mapping[str, str] | None = None) -> str:
    """The database URL alone, for migrations: they need no Wappi or Gemini keys."""
    env = os.environ if environ is None else environ
    raw = (env.get("DATABASE_URL") or "").strip()
    if not raw:
        return DEFAULT_DATABASE_URL
    try:
        return _postgres_url(raw)
    except ValueError as exc:
        raise SettingsError(f"configuration error: DATABASE_URL is invalid: {exc}") from None


def kb_dir_only(environ: Mapping[str, str] | None = None) -> Path:
    """The knowledge-base folder alone, for `python -m kb build`."""
    env = os.environ if environ is None else environ
    return Path((env.get("KB_DIR") or "").strip() or str(ROOT / "kb" / "docs"))


_cached: Settings | None = None


def get_settings() -> Settings:
    global _cached
    if _cached is None:
        _cached = load_settings()
    return _cached


def reset_settings_cache() -> None:
    """Forget the parsed settings (tests and the demo set the environment first)."""
    global _cached
    _cached = None
