"""Errors a user causes and can fix, named after what went wrong. Every command line prints one
as one line, ``PROG: <kind>: <message>``, and exits with code 2; the message names the key or
path and what is allowed."""
from __future__ import annotations


class UserError(Exception):
    """A problem the user can fix; ``kind`` says what went wrong (a config value, the run
    directory, a checkpoint file, the data)."""

    kind = "error"
