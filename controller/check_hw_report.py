"""What every ``picharge check-hw`` step reports: an outcome, a detail, a fix; printed as it comes.

Shared by the step modules (:mod:`controller.check_hw`, :mod:`controller.check_hw_pilot`,
:mod:`controller.check_hw_calibrate`) so none of them imports another for its types.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import TextIO


class Outcome(StrEnum):
    PASS = "PASS"
    FAIL = "FAIL"
    SKIP = "SKIP"
    #: The program did its part and only a person can judge the rest (the LED): not a failure.
    LOOK = "LOOK"


@dataclass(frozen=True, slots=True)
class StepResult:
    """One step's verdict; ``fix`` says what to check in the wiring when it failed."""

    step: str
    outcome: Outcome
    detail: str
    fix: str = ""


class Report:
    """Prints each result as it comes (a human is watching) and keeps them."""

    def __init__(self, out: TextIO) -> None:
        self._out = out
        self.results: list[StepResult] = []

    def heading(self, text: str) -> None:
        print(text, file=self._out, flush=True)

    def note(self, text: str) -> None:
        print(f"  {'':<11} {text}", file=self._out, flush=True)

    def add(self, result: StepResult) -> None:
        self.results.append(result)
        print(f"  {result.step:<11} {result.outcome}  {result.detail}", file=self._out, flush=True)
        if result.outcome in (Outcome.FAIL, Outcome.LOOK) and result.fix:
            label = "fix" if result.outcome is Outcome.FAIL else "if not"
            print(f"  {'':<11} {label:>9}: {result.fix}", file=self._out, flush=True)

    @property
    def failed(self) -> list[StepResult]:
        return [r for r in self.results if r.outcome is Outcome.FAIL]
