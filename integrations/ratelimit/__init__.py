"""Shared rate-limit budgets: one per (provider, external account id), seen by every process.

``budget_for(provider, account)`` is the ``CallBudget`` a connection's CRM client takes from
before every HTTP attempt (``integrations.services.calls.crm_client_for`` wires it); its
``acquire`` waits for room (up to ``RATE_LIMIT_MAX_WAIT_SECONDS``, else ``ProviderRateLimited``)
and its ``observe`` corrects it from each answer. ``budget_snapshot`` shows where a budget
stands. Storage: Redis when ``REDIS_URL`` is set, the database otherwise
(``RATE_LIMIT_STORAGE``). See ``budget.py`` for what is enforced and why.
"""

from __future__ import annotations

from ..providers.base import RateLimitPolicy
from ..providers.registry import PROVIDER_CLASSES
from .budget import AccountBudget, BudgetSnapshot, WindowBudget, headroom
from .stores import storage_choice

__all__ = [
    "AccountBudget",
    "BudgetSnapshot",
    "WindowBudget",
    "budget_for",
    "budget_reset",
    "budget_snapshot",
    "headroom",
    "policy_for",
    "storage_choice",
]


def policy_for(provider: str) -> RateLimitPolicy:
    """The provider's rate-limit policy (none for a provider we do not know)."""
    cls = PROVIDER_CLASSES.get(provider)
    return cls.rate_limit if cls is not None else RateLimitPolicy()


def budget_for(provider: str, account: str, *, max_wait: float | None = None) -> AccountBudget:
    """The shared budget of ``provider``'s account ``account`` (its external id)."""
    return AccountBudget(provider, account, policy_for(provider), max_wait=max_wait)


async def budget_snapshot(provider: str, account: str) -> BudgetSnapshot:
    """Where the account's budget stands now: each window's limit, remaining calls and reset,
    any block, and the provider's own count of the day."""
    return await budget_for(provider, account).snapshot()


async def budget_reset(provider: str, account: str) -> None:
    """Forget what was counted and learned for the account."""
    await budget_for(provider, account).reset()
