"""User-facing errors: one or two lines that say what is wrong and how to fix it."""

from __future__ import annotations


def first_line(exc: BaseException) -> str:
    """The first line of ``exc``'s message (its type name when the message is empty), to quote
    a library's error inside a one-line user error."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class TunelabError(Exception):
    """An error caused by the user's input (config, file, row, model path).

    The CLI prints its message without a traceback and exits with status 2.
    """


class ConfigError(TunelabError):
    """Every problem found in a run config, reported together."""

    def __init__(self, problems: list[str], source: str | None = None) -> None:
        self.problems = problems
        self.source = source
        where = f"{source}: " if source else ""
        if len(problems) == 1:
            super().__init__(f"{where}{problems[0]}")
        else:
            head = f"{where}{len(problems)} problem(s) in the config"
            super().__init__(head + "\n" + "\n".join(f"  - {p}" for p in problems))
