"""HubSpot: the provider descriptor (``provider.py``) and its CRM client (``client.py``).

``mapping.py`` holds the unified <-> HubSpot field mapping, ``wire.py`` HubSpot's JSON
shapes, ``transport.py`` the per-call policy (thread, one refresh on 401, call log),
``errors.py`` the error translation, ``search.py`` and ``batch.py`` those two operations.
"""
