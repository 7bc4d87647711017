import os

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
django.setup(set_prefix=False)

from django.conf import settings  # noqa: E402

from core.asgi import BodySizeLimit, PooledThreadsASGIHandler  # noqa: E402

application = BodySizeLimit(PooledThreadsASGIHandler(threads=settings.ASGI_DB_THREADS))
