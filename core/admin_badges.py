"""The admin's coloured status badge, one look for every list that shows a status."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.utils.html import format_html
from django.utils.safestring import SafeString

GREY = "#59636e"


def badge(status: str, label: str, colours: Mapping[Any, str]) -> SafeString:
    """``label`` on the colour ``colours`` gives ``status`` (grey when it has none); the keys
    may be the model's TextChoices members, which look up as their string values."""
    return format_html(
        '<span style="color:#fff;background:{};padding:1px 8px;border-radius:9px">{}</span>',
        colours.get(status, GREY),
        label,
    )
