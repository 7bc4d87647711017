from __future__ import annotations

import pytest

from core.errors import (
    ErrorCode,
    NotFound,
    ProviderRateLimited,
    ProviderUnavailable,
    code_for_status,
)
from core.result import Result


def test_ok_carries_its_value() -> None:
    result = Result.ok(41)
    assert result.is_ok
    assert result.error_code is None
    assert result.unwrap() == 41
    assert result.unwrap_or(0) == 41


def test_fail_carries_a_coded_error_and_unwrap_raises_it() -> None:
    error = ProviderRateLimited("slow down", retry_after=7)
    result: Result[int] = Result.fail(error)
    assert not result.is_ok
    assert result.error_code is ErrorCode.RATE_LIMITED
    assert result.unwrap_or(0) == 0
    with pytest.raises(ProviderRateLimited) as err:
        result.unwrap()
    assert err.value is error
    assert err.value.retryable
    assert err.value.retry_after == 7


def test_ok_none_is_still_ok() -> None:
    assert Result.ok(None).is_ok


def test_errors_have_stable_codes_statuses_and_retryability() -> None:
    assert (NotFound.code, NotFound.status, NotFound().retryable) == (
        ErrorCode.NOT_FOUND,
        404,
        False,
    )
    assert ProviderUnavailable().retryable
    assert ProviderUnavailable(retryable=False).retryable is False
    assert code_for_status(418) is ErrorCode.BAD_REQUEST
    assert code_for_status(504) is ErrorCode.INTERNAL_ERROR
