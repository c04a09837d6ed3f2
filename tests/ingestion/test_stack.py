"""Against real PostgreSQL and Envoy: REST CSV upload, JSON rows, report download."""

from __future__ import annotations

import httpx
import pytest

from tests.ingestion.conftest import SECRET, caller_for, import_csv, make_tenant
from tests.services.conftest import RunningStack, StackFactory

pytestmark = pytest.mark.integration

CATALOG = b"item_id,title,category,price\nsku-1,Phone,smartphones,699\nsku-2,Bad,laptops,-1\n"


async def test_csv_and_json_over_rest_on_postgresql(
    stack_factory: StackFactory, postgres_url: str, envoy_for: object
) -> None:
    stack: RunningStack = await stack_factory(postgres_url, internal_secret=SECRET)
    c = caller_for(stack, await make_tenant(stack))
    _, port = await envoy_for(stack.runtime.port)  # type: ignore[operator]
    headers = dict(c.metadata)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", headers=headers) as http:
        response = await http.post(
            "/api/v1/uploads/items:csv?upload_id=rest-1&file_name=catalog.csv",
            content=CATALOG,
            headers={"content-type": "text/csv"},
        )
        assert response.status_code == 200, response.text
        upload = response.json()
        assert upload["id"] == "rest-1" and upload["state"] == "UPLOAD_STATE_SUCCEEDED"
        assert upload["rows_accepted"] == "1" and upload["errors"][0]["reason"] == "NEGATIVE_PRICE"

        report = await http.get("/api/v1/uploads/rest-1/report")
        assert report.status_code == 200
        assert report.headers["content-type"].startswith("text/csv")
        assert report.text.splitlines()[1].startswith("2,price,NEGATIVE_PRICE,")

        rows = await http.post(
            "/api/v1/uploads/interactions:import",
            json=[
                {"options": {"upload_id": "json-1"}},
                {
                    "interactions": {
                        "interactions": [
                            {
                                "user_id": "u1",
                                "item_id": "sku-1",
                                "interaction_type": "INTERACTION_TYPE_VIEW",
                                "timestamp": "2026-01-01T00:00:00Z",
                            },
                        ]
                    }
                },
            ],
        )
        assert rows.status_code == 200, rows.text
        assert rows.json()["rows_accepted"] == "1"

        missing = await http.get("/api/v1/uploads/nope")
        assert missing.status_code == 404
        bad = await http.post(
            "/api/v1/uploads/items:csv", content=b"sku\n1\n", headers={"content-type": "text/csv"}
        )
        assert bad.status_code == 400 and "item_id" in bad.text

        stats = await http.get("/api/v1/dataStats")
        assert stats.json()["item_count"] == "1" and stats.json()["interaction_count"] == "1"
    # The same file over gRPC is recognised as a retry.
    again = await import_csv(c, CATALOG)
    assert again.id == "rest-1"
