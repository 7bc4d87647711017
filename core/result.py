"""``Result[T]``: an expected failure as a value the caller routes.

Used at the edges where failure is normal (provider calls, agent tools, per-record sync
outcomes). Transactional services raise ``AppError`` instead so the database rolls back;
both speak the codes in ``core.errors``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, TypeVar, final

from core.errors import AppError, ErrorCode

T = TypeVar("T")
U = TypeVar("U")


@final
@dataclass(frozen=True, slots=True)
class Result(Generic[T]):
    _value: T | None
    error: AppError | None

    @classmethod
    def ok(cls, value: T) -> Result[T]:
        return cls(value, None)

    @classmethod
    def fail(cls, error: AppError) -> Result[T]:
        return cls(None, error)

    @property
    def is_ok(self) -> bool:
        return self.error is None

    @property
    def error_code(self) -> ErrorCode | None:
        return None if self.error is None else self.error.code

    def unwrap(self) -> T:
        """Return the value, or raise the ``AppError`` the failure carries."""
        if self.error is not None:
            raise self.error
        return self._value  # type: ignore[return-value]

    def unwrap_or(self, default: U) -> T | U:
        return default if self.error is not None else self._value  # type: ignore[return-value]
