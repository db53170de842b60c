"""The one way a step fails, wherever it runs."""

from __future__ import annotations


class StepError(Exception):
    """A step that failed, with the message its run reports. A pure step's `compute` and an
    executor raise it without `step`, and the interpreter names the step it was running; it
    leaves `step` None only when the tool's `output` template failed."""

    def __init__(self, message: str, *, step: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.step = step
