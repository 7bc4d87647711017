"""The sandbox's plain HTML pages (consent and error pages), shared by every provider."""

from __future__ import annotations

import html

from starlette.responses import HTMLResponse


def page(brand: str, title: str, body: str, status: int = 200) -> HTMLResponse:
    document = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)} | {brand} sandbox</title>
<style>body{{font-family:sans-serif;max-width:36rem;margin:3rem auto}}
label{{display:block;margin:.5rem 0}}button{{margin-right:1rem;padding:.4rem 1.2rem}}</style>
</head><body><h1>{html.escape(title)}</h1>
{body}
</body></html>"""
    return HTMLResponse(document, status_code=status)


def error_page(brand: str, title: str, message: str) -> HTMLResponse:
    return page(brand, title, f'<p class="error" id="error">{html.escape(message)}</p>', 400)
