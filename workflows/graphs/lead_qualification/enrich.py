"""Company website enrichment: fetch the home page of a company's domain and read a few facts
from it (title, description, what the site offers).

The fetch is guarded because the domain comes from CRM data anyone could have typed: http(s)
only, standard ports, every address the name resolves to must be public (no private, loopback,
link-local or reserved addresses) unless ``ENRICH_ALLOW_PRIVATE`` (sandbox mode), redirects
followed by hand (three at most) and checked again, a timeout, and at most ``ENRICH_MAX_BYTES``
read. A failure is a value (``Result``), never the run's end: qualification goes on without it.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
from html.parser import HTMLParser
from urllib.parse import urljoin, urlsplit

import httpx
from django.conf import settings
from pydantic import BaseModel

from core.errors import BadRequest, ProviderError, ProviderUnavailable, ValidationFailed
from core.result import Result

MAX_REDIRECTS = 3
DOMAIN = re.compile(r"^(?=.{1,253}$)([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")
SIGNALS = {
    "pricing": ("pricing", "plans"),
    "enterprise": ("enterprise", "soc 2", "sso"),
    "hiring": ("careers", "we're hiring", "jobs"),
    "api": ("api", "developers", "integrations"),
    "ecommerce": ("add to cart", "shop now", "checkout"),
}


class Website(BaseModel):
    url: str
    title: str = ""
    description: str = ""
    signals: list[str] = []


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.title = ""
        self.description = ""
        self.text: list[str] = []
        self._in_title = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "title":
            self._in_title = True
        elif tag == "meta":
            a = {k.lower(): (v or "") for k, v in attrs}
            if a.get("name", "").lower() in ("description", "og:description"):
                self.description = self.description or a.get("content", "")

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self._in_title = False

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title += data
        self.text.append(data)


def website_url(domain: str) -> str:
    """Where a domain's home page is fetched from (the sandbox serves them in sandbox mode)."""
    template = settings.ENRICH_URL_TEMPLATE
    return template.format(domain=domain)


def _check_address(host: str, infos: list[tuple[object, ...]]) -> None:
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]))  # type: ignore[index]
        if not address.is_global and not settings.ENRICH_ALLOW_PRIVATE:
            raise ValidationFailed(
                f"{host} resolves to a private or reserved address; not fetched.",
                details={"host": host},
            )


async def _guard(url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise BadRequest("Only http and https websites are fetched.", details={"url": url})
    if parts.port not in (None, 80, 443) and not settings.ENRICH_ALLOW_PRIVATE:
        raise BadRequest("Only standard ports are fetched.", details={"url": url})
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(
            parts.hostname, parts.port or 443, type=socket.SOCK_STREAM
        )
    except OSError as exc:
        raise ProviderUnavailable(
            f"{parts.hostname} does not resolve.", details={"host": parts.hostname}
        ) from exc
    _check_address(parts.hostname, list(infos))


async def fetch_website(domain: str) -> Result[Website]:
    domain = domain.strip().lower().removeprefix("www.")
    if not DOMAIN.match(domain):
        return Result.fail(ValidationFailed("Not a domain name.", details={"domain": domain}))
    url = website_url(domain)
    try:
        async with httpx.AsyncClient(
            timeout=settings.ENRICH_TIMEOUT_SECONDS, follow_redirects=False
        ) as client:
            for _ in range(MAX_REDIRECTS + 1):
                await _guard(url)
                async with client.stream(
                    "GET", url, headers={"User-Agent": "Switchboard-Enrich/1.0"}
                ) as response:
                    if response.is_redirect and "location" in response.headers:
                        url = urljoin(url, response.headers["location"])
                        continue
                    if response.status_code != 200:
                        raise ProviderError(
                            f"The website answered {response.status_code}.",
                            details={"status": response.status_code},
                        )
                    kind = response.headers.get("content-type", "")
                    if "html" not in kind:
                        raise ProviderError(
                            "The website is not an HTML page.", details={"content_type": kind}
                        )
                    body = await _read(response)
                    return Result.ok(_parse(str(response.url), body))
            raise ProviderError("The website redirects too often.", details={"url": url})
    except httpx.TimeoutException:
        return Result.fail(ProviderUnavailable("The website did not answer in time."))
    except httpx.HTTPError as exc:
        return Result.fail(
            ProviderUnavailable(f"The website could not be reached ({type(exc).__name__}).")
        )
    except (BadRequest, ValidationFailed, ProviderError) as exc:
        return Result.fail(exc)


async def _read(response: httpx.Response) -> str:
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        chunks.append(chunk)
        size += len(chunk)
        if size >= settings.ENRICH_MAX_BYTES:
            break  # enough to read a home page: the rest is ignored, not an error
    raw = b"".join(chunks)[: settings.ENRICH_MAX_BYTES]
    return raw.decode(response.encoding or "utf-8", errors="replace")


def _parse(url: str, html: str) -> Website:
    page = _Page()
    page.feed(html)
    text = " ".join(page.text).lower()
    signals = [name for name, words in SIGNALS.items() if any(w in text for w in words)]
    return Website(
        url=url,
        title=" ".join(page.title.split())[:200],
        description=" ".join(page.description.split())[:500],
        signals=signals,
    )
