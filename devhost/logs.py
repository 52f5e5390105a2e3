"""devhost's log: one format for devhost, uvicorn and the in-process sidecar, safe from forging.

Everything devhost prints goes through the root logger with one format. Request data
(method, path, query, header values, function and event names) can carry control
characters: a path of `/api/x%0A2026-01-01 ERROR forged` decodes to two lines. The
formatter therefore escapes CR, LF, every other C0 and C1 control character, DEL and the
Unicode line and paragraph separators in each message, so one record is always one line;
a traceback stays readable but each of its lines is indented, so none of them can pass for
a record of its own. `escape` is also applied where devhost formats request data itself,
for handlers configured elsewhere (pytest's caplog, an embedding program).
"""

from __future__ import annotations

import logging
import re
from urllib.parse import parse_qsl, urlencode

FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"

# C0 controls (TAB included: it can hide columns), DEL, C1 controls (NEL U+0085 among
# them), and the Unicode line separator (U+2028) and paragraph separator (U+2029).
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}

#: query parameters whose values never reach the log (the management key travels as ?code=)
SECRET_PARAMETERS = frozenset({"code"})


def _replace(match: re.Match[str]) -> str:
    char = match.group()
    named = _NAMED.get(char)
    if named is not None:
        return named
    code = ord(char)
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def escape(text: str) -> str:
    """`text` on one line: control characters and line separators as visible escapes."""
    return _UNSAFE.sub(_replace, text)


def redact_query(query: str) -> str:
    """The query string for a log line: secret parameters' values replaced by `***`."""
    if not query:
        return ""
    pairs = parse_qsl(query, keep_blank_values=True)
    if not any(name.lower() in SECRET_PARAMETERS for name, _ in pairs):
        return query
    return urlencode([(n, "***" if n.lower() in SECRET_PARAMETERS else v) for n, v in pairs], safe="*/:,")


class SafeFormatter(logging.Formatter):
    """The one devhost format; every message on one line, tracebacks indented."""

    def __init__(self) -> None:
        super().__init__(FORMAT)

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = escape(record.message)
        return super().formatMessage(record)

    def formatException(self, ei: object) -> str:
        text = super().formatException(ei)  # type: ignore[arg-type]
        return "\n".join("    " + escape(line) for line in text.splitlines())

    def formatStack(self, stack_info: str) -> str:
        return "\n".join("    " + escape(line) for line in stack_info.splitlines())


def configure(level: int) -> None:
    """Route devhost's, uvicorn's and the SDKs' loggers through one safe handler."""
    handler = logging.StreamHandler()
    handler.setFormatter(SafeFormatter())
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level)
    # uvicorn configures its own handlers unless told not to (devhost passes log_config=None);
    # its loggers then propagate here. Its access log is off: devhost logs each request itself.
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
        logger.setLevel(max(level, logging.WARNING))  # not "Started server process [pid]"
    # The SDKs log every client call and replay at INFO; keep the host's log about the app.
    for noisy in ("azure.durable_functions", "azure.functions.DurableFunctions", "durabletask"):
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))
