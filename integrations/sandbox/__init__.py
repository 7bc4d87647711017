"""Local, stateful stand-ins of the CRM providers' OAuth and REST APIs (``manage.py sandbox``).

Everything lives in memory in one process and one event loop: ``state.SandboxState`` holds the
shared parts (one lock, request counters, injectable faults) and each provider package
(``hubspot``, ``salesforce``) its own state and routes. ``app.build_app`` assembles the Starlette app:
``/<provider>/app`` stands in for the provider's browser host, ``/<provider>/api`` for its API
host, and ``/_sandbox`` is the control API tests use (reset, counters, faults, limits, tokens).
"""
