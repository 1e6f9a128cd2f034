"""Where the library's messages go: the `gru4rec` logger, and the handler that prints them.

The library never prints. Its modules log to children of `logging.getLogger("gru4rec")`: the
original's progress lines (SET lines, sorting, the sample store, one line per epoch, what
evaluation measures) at INFO, problems that do not stop the work at WARNING. Python shows
only WARNING and above by default, so a program or notebook sees the progress lines once it
asks for them: `to_stdout()` prints them bare, as the original did (the commands call it in
their main, never on import), or any logging configuration of the user's own.
"""
import logging
import sys

LOGGER = logging.getLogger("gru4rec")


class _StdoutHandler(logging.Handler):
    """Writes each message bare to the sys.stdout of the moment (as print does, so output
    captured or redirected after the handler was attached goes to the same place)."""

    def emit(self, record):
        try:
            sys.stdout.write(self.format(record) + "\n")
        except Exception:
            self.handleError(record)


def to_stdout(level=logging.INFO):
    """Prints the package's messages from `level` up on stdout, bare (no level or logger name):
    the original's output. Attaches the handler once, however often it is called. The
    messages still reach the root logger too (pytest's caplog, a program's own handlers): a
    program that also gives the root logger a handler on stdout sees each line twice."""
    if not any(isinstance(h, _StdoutHandler) for h in LOGGER.handlers):
        LOGGER.addHandler(_StdoutHandler())
    LOGGER.setLevel(level)
