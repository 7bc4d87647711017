from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from .models import Membership


def home(request: HttpRequest) -> HttpResponse:
    memberships = []
    if request.user.is_authenticated:
        memberships = list(
            Membership.objects.filter(user_id=request.user.pk).select_related("organization")
        )
    return render(request, "home.html", {"memberships": memberships})
