"""WSGI entry for the DRF reference (``gunicorn bench.refs.drf_wsgi:application``)."""

import os

from django.core.wsgi import get_wsgi_application

os.environ["DJANGO_SETTINGS_MODULE"] = "bench.refs.drf_settings"

application = get_wsgi_application()
