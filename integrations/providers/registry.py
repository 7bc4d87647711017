"""Which providers exist, built from settings. Adding a provider: its module, one line here."""

from __future__ import annotations

from django.conf import settings

from core.errors import NotFound

from .base import Provider, ProviderConfig
from .hubspot.provider import HubSpotProvider
from .salesforce.provider import SalesforceProvider

PROVIDER_CLASSES: dict[str, type[Provider]] = {
    HubSpotProvider.key: HubSpotProvider,
    SalesforceProvider.key: SalesforceProvider,
}


def provider_config(key: str) -> ProviderConfig:
    raw = settings.PROVIDERS[key]
    return ProviderConfig(
        client_id=raw["client_id"],
        client_secret=raw["client_secret"],
        redirect_uri=raw["redirect_uri"],
        app_url=raw["app_url"],
        api_url=raw["api_url"],
        extra={k: v for k, v in raw.items() if k not in ProviderConfig.__slots__},
    )


def get_provider(key: str) -> Provider:
    """The provider ``key``, configured; ``NotFound`` for an unknown or unconfigured one."""
    cls = PROVIDER_CLASSES.get(key)
    if cls is None or key not in settings.PROVIDERS:
        raise NotFound(f"No provider {key!r}.", details={"provider": key})
    provider = cls(provider_config(key))
    if not provider.config.configured:
        raise NotFound(
            f"Provider {key!r} is not configured on this installation.",
            details={
                "provider": key,
                "missing": [f"{key.upper()}_CLIENT_ID", f"{key.upper()}_CLIENT_SECRET"],
            },
        )
    return provider


def available_providers() -> list[Provider]:
    """Every provider this installation has credentials for, in display order."""
    found = []
    for key in PROVIDER_CLASSES:
        if key in settings.PROVIDERS and provider_config(key).configured:
            found.append(PROVIDER_CLASSES[key](provider_config(key)))
    return found
