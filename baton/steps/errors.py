"""The one way a step fails, wherever it runs."""

from __future__ import annotations


class StepError(Exception):
    """A step that failed, with the message its run reports. Raised by a pure step's
    `compute` and by an executor without `step`; the interpreter names the step it was running
    (None once named: the tool's output template failed)."""

    def __init__(self, message: str, *, step: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.step = step
