from django.urls import path

from . import views

app_name = "webhooks"

# The target URL configured at the provider, with or without a trailing slash (the signature
# covers the URL as the provider called it, so either verifies).
urlpatterns = [
    path("<slug:provider>", views.receive, name="receive"),
    path("<slug:provider>/", views.receive),
]
