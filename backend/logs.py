"""JSON-lines logging with the request id of the request being served."""

from __future__ import annotations

import contextvars
import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "palmhall_request_id", default=None
)

# Attributes every LogRecord has; anything else passed with `extra=` is emitted as a field.
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        rid = request_id_var.get()
        if rid:
            entry["request_id"] = rid
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


def log_config(level: str = "INFO") -> dict[str, Any]:
    """A logging dictConfig for palmhall and Sanic's own loggers, all as JSON lines on stderr."""
    handler = {"class": "logging.StreamHandler", "formatter": "json", "stream": sys.stderr}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": JsonFormatter}},
        "handlers": {"json": handler},
        "loggers": {
            "palmhall": {"level": level, "handlers": ["json"], "propagate": False},
            "sanic.root": {"level": level, "handlers": ["json"], "propagate": False},
            "sanic.error": {"level": level, "handlers": ["json"], "propagate": False},
            "sanic.server": {"level": level, "handlers": ["json"], "propagate": False},
            "sanic.access": {"level": "WARNING", "handlers": ["json"], "propagate": False},
            "tortoise": {"level": "WARNING", "handlers": ["json"], "propagate": False},
        },
    }


def setup(level: str = "INFO") -> None:
    import logging.config

    logging.config.dictConfig(log_config(level))
