"""Company websites for the demo and the tests: ``https://{domain}/`` -> ``/sites/{domain}/``.

Any domain answers a small, stable HTML home page made from the domain's hash (so the same
company always looks the same): a title, a meta description and some of the phrases lead
enrichment reads (pricing, enterprise, careers, API). A few names answer otherwise, to exercise
the fetcher: ``redirect.*`` redirects to ``www.``, ``missing.*`` is a 404, ``huge.*`` is a 5 MB
page, ``slow.*`` answers after 10 seconds, ``binary.*`` is not HTML.
"""

from __future__ import annotations

import asyncio
import hashlib

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

PHRASES = (
    "See our pricing and plans.",
    "Enterprise ready: SSO and SOC 2.",
    "Careers: we're hiring engineers.",
    "Developers: a public API and integrations.",
    "Shop now: free shipping.",
)


async def site(request: Request) -> Response:
    domain = str(request.path_params["domain"]).lower()
    label = domain.split(".", 1)[0]
    if label == "redirect":
        return RedirectResponse(f"/sites/www.{domain}/", status_code=301)
    if label == "missing":
        return HTMLResponse("<h1>Not found</h1>", status_code=404)
    if label == "binary":
        return Response(b"\x89PNG\r\n", media_type="image/png")
    if label == "slow":
        await asyncio.sleep(10)
    digest = hashlib.sha256(domain.encode()).digest()
    picked = [p for i, p in enumerate(PHRASES) if digest[i] % 2 == 0]
    name = label.replace("-", " ").title()
    body = "".join(f"<p>{p}</p>" for p in picked)
    if label == "huge":
        body += "<p>" + "x" * (5 * 1024 * 1024) + "</p>"
    html = (
        f"<!doctype html><html><head><title>{name} - home</title>"
        f'<meta name="description" content="{name} makes things for businesses.">'
        f"</head><body><h1>{name}</h1>{body}</body></html>"
    )
    return HTMLResponse(html)


def routes() -> list[Route]:
    return [Route("/{domain}/", site, methods=["GET"])]
