"""Console output of the ``rcdml`` loggers: one line per message, on rank 0 only.

Information goes to stdout and warnings and errors to stderr, each looked up when a line is
written (so a redirected ``sys.stdout``, e.g. pytest's capture, gets it). The library itself only
adds a ``NullHandler`` (a program decides where a library's log goes); every ``rcdml-*`` entry
point calls :func:`configure_logging`.
"""
from __future__ import annotations

import logging
import sys

from rcdml.distributed.env import env_rank

ROOT = "rcdml"


class RankZeroFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return env_rank() == 0


class _ConsoleHandler(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        stream = sys.stderr if record.levelno >= logging.WARNING else sys.stdout
        try:
            stream.write(self.format(record) + "\n")
            stream.flush()
        except Exception:
            self.handleError(record)


def configure_logging(level: int = logging.INFO) -> None:
    """Send the ``rcdml`` loggers' messages (as they are, no prefix) to the console from rank 0.
    Idempotent."""
    logger = logging.getLogger(ROOT)
    logger.setLevel(level)
    if not any(isinstance(h, _ConsoleHandler) for h in logger.handlers):
        handler = _ConsoleHandler()
        handler.addFilter(RankZeroFilter())
        logger.addHandler(handler)
    logger.propagate = False


def get_logger(name: str) -> logging.Logger:
    """The logger of module ``name`` (``__name__``), under the ``rcdml`` logger."""
    return logging.getLogger(name if name.startswith(ROOT) else f"{ROOT}.{name}")


logging.getLogger(ROOT).addHandler(logging.NullHandler())
