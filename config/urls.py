from __future__ import annotations

from django.contrib import admin
from django.urls import include, path

from accounts.views import home
from config.api import api

urlpatterns = [
    path("", home, name="home"),
    path("admin/", admin.site.urls),
    path("accounts/", include("allauth.urls")),
    path("connect/", include("integrations.urls")),
    path("webhooks/", include("integrations.webhooks.urls")),
    path("api/v1/", api.urls),
]
