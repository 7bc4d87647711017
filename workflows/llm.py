"""The chat model agents use: ``LLM_MODEL`` ("provider:model") through LangChain's
``init_chat_model``, so any provider package the user installs works (its key comes from that
package's own environment variable). Empty: no model, and graphs take their deterministic path.
"""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from langchain_core.language_models import BaseChatModel

from core.errors import ServiceUnavailable

# Tests (and embedders) may install a factory instead of the settings-driven one.
_factory: Callable[[], BaseChatModel | None] | None = None


def set_chat_model_factory(factory: Callable[[], BaseChatModel | None] | None) -> None:
    global _factory
    _factory = factory


def chat_model() -> BaseChatModel | None:
    """The configured chat model, or None. A model that cannot be built (its package is not
    installed, a malformed name) is ``service_unavailable``, not a silent fallback."""
    if _factory is not None:
        return _factory()
    name = settings.LLM_MODEL.strip()
    if not name:
        return None
    from langchain.chat_models import init_chat_model

    try:
        return init_chat_model(name, temperature=settings.LLM_TEMPERATURE)
    except (ImportError, ValueError) as exc:
        raise ServiceUnavailable(
            f"The chat model {name!r} cannot be loaded: {exc}",
            details={"llm_model": name},
            retryable=False,
        ) from exc


def model_name(model: BaseChatModel | None) -> str:
    if model is None:
        return ""
    for attr in ("model_name", "model"):
        value = getattr(model, attr, None)
        if isinstance(value, str) and value:
            return value[:100]
    return type(model).__name__[:100]
