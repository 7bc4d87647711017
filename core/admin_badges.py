"""The admin's coloured status badge, one look for every list that shows a status.

Colours are tones, each a class in ``core/static/core/admin.css`` (the content security policy
allows no inline style), so a colour map names tones, not hex values.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal, get_args

from django.utils.html import format_html
from django.utils.safestring import SafeString

Tone = Literal["green", "blue", "amber", "orange", "red", "grey", "slate"]
TONES: tuple[Tone, ...] = get_args(Tone)


def badge(status: str, label: str, tones: Mapping[Any, Tone]) -> SafeString:
    """``label`` in the tone ``tones`` gives ``status`` (grey when it has none); the keys may be
    the model's TextChoices members, which look up as their string values."""
    return format_html('<span class="sb-badge sb-{}">{}</span>', tones.get(status, "grey"), label)
