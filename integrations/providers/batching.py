"""Collecting a batch's per-item outcomes, in the caller's order, whatever the provider."""

from __future__ import annotations

from dataclasses import dataclass, field

from core.errors import AppError

from .unified import AnyRecord, BatchItemError, BatchResult


def item_error(index: int, error: AppError, *, prefix: str = "") -> BatchItemError:
    details = dict(error.details)
    if error.retry_after is not None:
        details["retry_after"] = error.retry_after
    return BatchItemError(
        index=index, code=error.code.value, message=prefix + error.message, details=details
    )


@dataclass(slots=True)
class Collected:
    records: dict[int, AnyRecord] = field(default_factory=dict)
    errors: dict[int, BatchItemError] = field(default_factory=dict)

    def fail(self, index: int, error: AppError, *, prefix: str = "") -> None:
        self.errors[index] = item_error(index, error, prefix=prefix)

    def result(self) -> BatchResult[AnyRecord]:
        return BatchResult[AnyRecord](
            results=[self.records[i] for i in sorted(self.records)],
            errors=[self.errors[i] for i in sorted(self.errors)],
        )
