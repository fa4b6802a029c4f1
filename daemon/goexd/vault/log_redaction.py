"""Every log line passes the vault's redactor: message, arguments and traceback text."""

from __future__ import annotations

import logging
from collections.abc import Callable

TextRedactor = Callable[[str], str]


class RedactingFilter(logging.Filter):
    """Attached to handlers (not loggers) so that records of every logger, library ones included, pass it."""

    def __init__(self, redact: TextRedactor) -> None:
        super().__init__()
        self.redact = redact
        self._formatter = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = self.redact(record.getMessage())
        record.args = None
        if record.exc_info and not record.exc_text:
            # Formatters reuse exc_text when it is set, so the traceback is redacted once here.
            record.exc_text = self.redact(self._formatter.formatException(record.exc_info))
        if record.stack_info:
            record.stack_info = self.redact(record.stack_info)
        return True


def install_log_redaction(redact: TextRedactor, logger: logging.Logger | None = None) -> RedactingFilter:
    flt = RedactingFilter(redact)
    for handler in (logger or logging.getLogger()).handlers:
        handler.addFilter(flt)
    return flt
