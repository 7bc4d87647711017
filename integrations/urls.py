from django.urls import path

from . import views

app_name = "connect"

urlpatterns = [
    path("", views.connect_index, name="index"),
    path("<slug:provider>/start", views.connect_start, name="start"),
    path("<slug:provider>/callback", views.connect_callback, name="callback"),
]
