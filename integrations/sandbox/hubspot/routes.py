"""Every HubSpot endpoint the sandbox serves, by host (paths relative to the mount)."""

from __future__ import annotations

from starlette.routing import BaseRoute, Route

from . import associations, batch, crm, oauth, search

OBJECTS = "/crm/v3/objects/{object_type}"
RECORD = OBJECTS + "/{object_id}"
V4_RECORD = "/crm/v4/objects/{from_type}/{from_id}/associations"
V4_BATCH = "/crm/v4/associations/{from_type}/{to_type}/batch"


def app_routes() -> list[BaseRoute]:
    """``https://app.hubspot.com``: where people consent."""
    return [Route("/oauth/authorize", oauth.authorize, methods=["GET", "POST"])]


def api_routes() -> list[BaseRoute]:
    """``https://api.hubapi.com``: tokens and the CRM."""
    return [
        Route("/oauth/v1/token", oauth.token, methods=["POST"]),
        Route("/oauth/v1/access-tokens/{token}", oauth.access_token_info, methods=["GET"]),
        Route(
            "/oauth/v1/refresh-tokens/{token}", oauth.refresh_token_info, methods=["GET", "DELETE"]
        ),
        Route(OBJECTS, crm.list_objects, methods=["GET"]),
        Route(OBJECTS, crm.create_object, methods=["POST"]),
        Route(OBJECTS + "/search", search.search_objects, methods=["POST"]),
        Route(OBJECTS + "/batch/create", batch.batch_create, methods=["POST"]),
        Route(OBJECTS + "/batch/read", batch.batch_read, methods=["POST"]),
        Route(OBJECTS + "/batch/update", batch.batch_update, methods=["POST"]),
        Route(OBJECTS + "/batch/archive", batch.batch_archive, methods=["POST"]),
        Route(RECORD, crm.get_object, methods=["GET"]),
        Route(RECORD, crm.update_object, methods=["PATCH"]),
        Route(RECORD, crm.archive_object, methods=["DELETE"]),
        Route(
            V4_RECORD + "/default/{to_type}/{to_id}", associations.create_default, methods=["PUT"]
        ),
        Route(V4_RECORD + "/{to_type}/{to_id}", associations.create_labeled, methods=["PUT"]),
        Route(V4_RECORD + "/{to_type}/{to_id}", associations.remove, methods=["DELETE"]),
        Route(V4_RECORD + "/{to_type}", associations.list_associations, methods=["GET"]),
        Route(V4_BATCH + "/associate/default", associations.batch_default, methods=["POST"]),
        Route(V4_BATCH + "/create", associations.batch_create, methods=["POST"]),
        Route(V4_BATCH + "/read", associations.batch_read, methods=["POST"]),
        Route(V4_BATCH + "/archive", associations.batch_archive, methods=["POST"]),
    ]
