"""Django's own middleware (and django-csp's), run without a thread hop under ASGI.

Django's ``MiddlewareMixin`` runs every ``process_request`` and ``process_response`` of a
middleware in a worker thread (``sync_to_async``) when the stack is async, in case the hook
blocks: eight such middleware cost an API request sixteen thread hops before its view runs.
These subclasses run the hooks inline on the event loop, which is safe because the hooks are
plain CPU work (headers, cookies, lazy objects), and go to a thread only in the one case that
does I/O: saving a session, or storing messages in it (which may load it first).

Each class is a subclass of the one it replaces, so Django's system checks still find it, and
under WSGI (the test client) it behaves exactly like the original.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

from asgiref.sync import markcoroutinefunction, sync_to_async
from csp import middleware as csp
from django.conf import settings
from django.contrib.auth import middleware as auth
from django.contrib.messages import middleware as messages
from django.contrib.sessions import middleware as sessions
from django.http import HttpRequest
from django.http.response import HttpResponseBase
from django.middleware import clickjacking, common, csrf, security


class _Inline:
    """Mixed in before a ``MiddlewareMixin`` subclass: its hooks run inline when async."""

    async_mode: bool
    get_response: Callable[[HttpRequest], Any]

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        super().__init__(get_response)  # type: ignore[call-arg]
        view_hook = getattr(self, "process_view", None)
        if self.async_mode and view_hook is not None:
            # The handler hops to a thread for a sync view hook; give it an async one.
            async def process_view(*args: Any) -> HttpResponseBase | None:
                return view_hook(*args)  # type: ignore[no-any-return]

            # An instance attribute, shadowing the class's sync hook for this instance only.
            self.__dict__["process_view"] = markcoroutinefunction(process_view)

    def response_does_io(self, request: HttpRequest) -> bool:
        return False

    async def __acall__(self, request: HttpRequest) -> HttpResponseBase:
        response: HttpResponseBase | None = None
        process_request = getattr(self, "process_request", None)
        if process_request is not None:
            response = process_request(request)
        response = response or await self.get_response(request)
        process_response = getattr(self, "process_response", None)
        if process_response is not None:
            if self.response_does_io(request):
                response = await sync_to_async(process_response, thread_sensitive=True)(
                    request, response
                )
            else:
                response = process_response(request, response)
        return cast(HttpResponseBase, response)


class SecurityMiddleware(_Inline, security.SecurityMiddleware):
    pass


class CommonMiddleware(_Inline, common.CommonMiddleware):
    pass


class CsrfViewMiddleware(_Inline, csrf.CsrfViewMiddleware):
    pass


class AuthenticationMiddleware(_Inline, auth.AuthenticationMiddleware):
    pass


class XFrameOptionsMiddleware(_Inline, clickjacking.XFrameOptionsMiddleware):
    pass


class SessionMiddleware(_Inline, sessions.SessionMiddleware):
    def response_does_io(self, request: HttpRequest) -> bool:
        session = getattr(request, "session", None)
        return session is not None and (session.modified or settings.SESSION_SAVE_EVERY_REQUEST)


class MessageMiddleware(_Inline, messages.MessageMiddleware):
    def response_does_io(self, request: HttpRequest) -> bool:
        # Storing messages may read the session from the database first.
        storage = getattr(request, "_messages", None)
        return storage is not None and bool(storage.used or storage.added_new)


class CSPMiddleware(_Inline, csp.CSPMiddleware):
    """django-csp's Content-Security-Policy header, with the policy chosen by what the response
    is (see config/settings.py): HTML pages get ``CONTENT_SECURITY_POLICY``, the API's docs page
    ``CONTENT_SECURITY_POLICY_API_DOCS``, anything else (JSON) ``CONTENT_SECURITY_POLICY_NON_HTML``.
    A view's own ``@csp`` / ``@csp_replace`` / ``@csp_update`` decorators still apply."""

    def get_policy_parts(
        self, request: HttpRequest, response: HttpResponseBase, report_only: bool = False
    ) -> csp.PolicyParts:
        parts = super().get_policy_parts(request, response, report_only)
        if report_only or parts.config is not None:
            return parts
        match = getattr(request, "resolver_match", None)
        if match is not None and match.view_name == "api:openapi-view":
            parts.config = settings.CONTENT_SECURITY_POLICY_API_DOCS["DIRECTIVES"]
        elif not response.get("Content-Type", "").startswith("text/html"):
            parts.config = settings.CONTENT_SECURITY_POLICY_NON_HTML["DIRECTIVES"]
        return parts
