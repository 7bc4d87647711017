"""Every Salesforce endpoint the sandbox serves, by host.

Login hosts (on the HTTP listener, and on the instance too, as My Domain hosts serve OAuth):
``https://login.salesforce.com`` -> ``/salesforce/login``, ``https://test.salesforce.com`` ->
``/salesforce/test``, ``https://{domain}`` -> ``/salesforce/mydomain/{domain}``. The instance
(``instance_url``, on the TLS listener) serves the REST API under ``/services/data``.
"""

from __future__ import annotations

from starlette.routing import BaseRoute, Route

from . import composite, oauth, query, records, resources

DATA = "/services/data/{version}"
SOBJECT = DATA + "/sobjects/{sobject}"
ALL_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"]


def login_routes() -> list[BaseRoute]:
    """A login host: consent, tokens, revocation and the identity URL."""
    return [
        Route("/services/oauth2/authorize", oauth.authorize, methods=["GET", "POST"]),
        Route("/services/oauth2/token", oauth.token, methods=["POST"]),
        Route("/services/oauth2/revoke", oauth.revoke, methods=["GET", "POST"]),
        Route("/id/{org_id}/{user_id}", oauth.identity_endpoint, methods=["GET", "POST"]),
    ]


def instance_routes() -> list[BaseRoute]:
    """An org's instance: the REST API (paths without their trailing slash; see ``app.py``)."""
    return [
        Route("/services/data", resources.versions, methods=["GET"]),
        Route(DATA, resources.resources, methods=["GET"]),
        Route(DATA + "/limits", resources.list_limits, methods=["GET"]),
        Route(DATA + "/sobjects", records.global_describe, methods=["GET"]),
        Route(SOBJECT, records.sobject_info, methods=["GET"]),
        Route(SOBJECT, records.create_record, methods=["POST"]),
        Route(SOBJECT + "/describe", records.describe_sobject, methods=["GET"]),
        Route(SOBJECT + "/{record_id}", records.get_record, methods=["GET"]),
        Route(SOBJECT + "/{record_id}", records.update_record, methods=["PATCH"]),
        Route(SOBJECT + "/{record_id}", records.delete_record, methods=["DELETE"]),
        Route(DATA + "/query", query.query, methods=["GET"]),
        Route(DATA + "/queryAll", query.query_all, methods=["GET"]),
        Route(DATA + "/query/{locator}", query.more, methods=["GET"]),
        Route(DATA + "/queryAll/{locator}", query.more, methods=["GET"]),
        Route(DATA + "/composite/sobjects", composite.create_many, methods=["POST"]),
        Route(DATA + "/composite/sobjects", composite.update_many, methods=["PATCH"]),
        Route(DATA + "/composite/sobjects", composite.delete_many, methods=["DELETE"]),
        Route(DATA + "/composite/sobjects/{sobject}", composite.retrieve_many, methods=["GET"]),
        *login_routes(),
        Route("/services/data/{rest:path}", records.not_found, methods=ALL_METHODS),
    ]
