from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from .selectors import membership_list


def home(request: HttpRequest) -> HttpResponse:
    memberships = []
    if request.user.is_authenticated:
        memberships = list(membership_list(user_id=request.user.pk))
    return render(request, "home.html", {"memberships": memberships})
