"""Log output for every process: plain text for people, or one JSON object per line for a log
pipeline (ERAS_LOG_FORMAT=json). One formatter for `eras serve`, `eras worker` and the API
(uvicorn --log-config deploy/log-config.yaml).

A record keeps only fixed fields (time, level, logger, message, exception): `extra` attributes
are not copied, so an object passed along by a library cannot leak clinical content. Messages
themselves name patients by resource id only (the house rule for logs and errors).
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Literal

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
LogFormat = Literal["text", "json"]


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ts, level, logger, message[, exc_type, exc]."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info and record.exc_info[0] is not None:
            entry["exc_type"] = record.exc_info[0].__name__
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def configure_logging(level: str = "INFO", log_format: LogFormat = "text") -> None:
    """Root handler on stderr in the given format (ERAS_LOG_LEVEL, ERAS_LOG_FORMAT); replaces
    earlier handlers."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT))
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)
