from __future__ import annotations

import orjson
from django.test import Client

from tests.conftest import Api


def test_openapi_documents_every_operation_with_the_envelope(db: None) -> None:
    response = Client().get("/api/v1/openapi.json")
    assert response.status_code == 200
    doc = orjson.loads(response.content)
    assert doc["info"]["title"] == "Switchboard API"
    paths = doc["paths"]
    for path in ["/api/v1/health", "/api/v1/me", "/api/v1/api-keys", "/api/v1/api-keys/{key_id}"]:
        assert path in paths
    schemas = doc["components"]["schemas"]
    for path, operations in paths.items():
        for method, operation in operations.items():
            responses = operation["responses"]
            success = next(code for code in responses if code.startswith("2"))
            content = responses[success]["content"]
            if "text/event-stream" not in content:  # a stream's errors are still enveloped
                ref = content["application/json"]["schema"]["$ref"]
                schema = schemas[ref.rsplit("/", 1)[1]]
                assert {"success", "data", "error", "meta"} <= set(schema["properties"]), (
                    path,
                    method,
                )
            for status in ("404", "422", "500") if path != "/api/v1/health" else ("503",):
                err_ref = responses[status]["content"]["application/json"]["schema"]["$ref"]
                assert err_ref.endswith("/ErrorEnvelope"), (path, method, status)
    codes = schemas["ErrorBody"]["properties"]["code"]
    assert "$ref" in codes or "enum" in codes  # the stable codes are listed
    assert (
        "BearerAuth" in str(doc["components"]["securitySchemes"])
        or doc["components"]["securitySchemes"]
    )


def test_docs_page_is_served(anon: Api) -> None:
    response = anon.client.get("/api/v1/docs")
    assert response.status_code == 200
    assert b"swagger-ui" in response.content
