"""Knowledge sets through the API: typed rows, imports (CSV, JSONL, JSON, text, a web page)
with their limits, filters and pagination, CSV export, ranked lexical search, and the safety
of every user string that reaches a query."""

from __future__ import annotations

import csv
import io
import itertools
import json
import re
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from temporalio.testing import WorkflowEnvironment

from baton.settings import Settings
from tests.local_http import LocalHttp
from tests.support import Tenant, api_client, assert_error, cursor_of, items_of

# The installation's ceilings, which the default plan (no limits of its own) gets.
MAX_IMPORT_BYTES = Settings.model_fields["max_upload_bytes"].default
MAX_IMPORT_ROWS = Settings.model_fields["max_rows_per_import"].default

PRODUCTS = [
    {"name": "lamp", "notes": "A warm desk lamp", "price": 25.5, "stock": 3, "sale": True},
    {"name": "chair", "notes": "An oak chair", "price": 80, "stock": 0, "sale": False},
    {"name": "desk", "notes": "A standing desk", "price": 300, "stock": 7},
    {"name": "100% cotton_rug", "notes": "A soft rug", "price": 40.0, "stock": 2, "sale": True},
]
PRODUCT_COLUMNS = [
    {"name": "name"},
    {"name": "notes"},
    {"name": "price", "type": "number"},
    {"name": "stock", "type": "integer"},
    {"name": "sale", "type": "boolean"},
]
FACTS = [
    "The capital of France is Paris, on the Seine.",
    "Mount Everest is the highest mountain above sea level.",
    "Water boils at 100 degrees Celsius at sea level.",
    "The Pacific is the largest and deepest ocean on Earth.",
    "Honey bees communicate the location of flowers by dancing.",
]


async def new_set(
    api: httpx.AsyncClient, tenant: Tenant, name: str = "products", **spec: Any
) -> dict[str, Any]:
    body = {"name": name, "columns": PRODUCT_COLUMNS, **spec}
    response = await api.post(tenant.url("/knowledge/sets"), json=body, headers=tenant.headers)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def set_url(tenant: Tenant, knowledge_set: dict[str, Any], path: str = "") -> str:
    return tenant.url(f"/knowledge/sets/{knowledge_set['id']}{path}")


async def add_rows(
    api: httpx.AsyncClient, tenant: Tenant, knowledge_set: dict[str, Any], rows: Any
) -> list[int]:
    response = await api.post(
        set_url(tenant, knowledge_set, "/rows"), json=rows, headers=tenant.headers
    )
    assert response.status_code == 201, response.text
    ids: list[int] = response.json()["row_ids"]
    return ids


async def all_rows(
    api: httpx.AsyncClient, tenant: Tenant, knowledge_set: dict[str, Any], **params: Any
) -> list[dict[str, Any]]:
    if "filters" in params:
        params["filters"] = json.dumps(params["filters"])
    response = await api.get(
        set_url(tenant, knowledge_set, "/rows"),
        params={"limit": 1000, **params},
        headers=tenant.headers,
    )
    assert response.status_code == 200, response.text
    rows: list[dict[str, Any]] = response.json()["items"]
    return rows


async def names_where(
    api: httpx.AsyncClient, tenant: Tenant, knowledge_set: dict[str, Any], *filters: Any
) -> list[str]:
    rows = await all_rows(api, tenant, knowledge_set, filters=list(filters))
    return [row["data"]["name"] for row in rows]


async def upload(
    api: httpx.AsyncClient,
    tenant: Tenant,
    knowledge_set: dict[str, Any],
    filename: str,
    content: bytes,
    **form: str,
) -> httpx.Response:
    return await api.post(
        set_url(tenant, knowledge_set, "/imports"),
        files={"file": (filename, content)},
        data=form,
        headers=tenant.headers,
    )


async def search(
    api: httpx.AsyncClient, tenant: Tenant, knowledge_set: dict[str, Any], **body: Any
) -> httpx.Response:
    return await api.post(
        set_url(tenant, knowledge_set, "/search"),
        json={"mode": "lexical", **body},
        headers=tenant.headers,
    )


async def test_a_set_is_created_listed_changed_and_deleted(api: httpx.AsyncClient, tenant: Tenant):
    created = await new_set(api, tenant, description="What we sell")
    assert created["row_count"] == 0
    assert created["embedding"]["provider"] == "none"
    listed = (await api.get(tenant.url("/knowledge/sets"), headers=tenant.headers)).json()
    assert [s["name"] for s in listed["items"]] == ["products"]

    duplicate = await api.post(
        tenant.url("/knowledge/sets"), json={"name": "products"}, headers=tenant.headers
    )
    assert_error(duplicate, 409, "conflict")

    await add_rows(api, tenant, created, PRODUCTS[:2])
    renamed = await api.patch(
        set_url(tenant, created), json={"name": "catalogue"}, headers=tenant.headers
    )
    assert renamed.json()["name"] == "catalogue"
    assert renamed.json()["row_count"] == 2
    added = await api.post(
        set_url(tenant, created, "/columns"),
        json={"name": "colour", "description": "Main colour"},
        headers=tenant.headers,
    )
    assert added.status_code == 201
    assert [c["name"] for c in added.json()["columns"]][-1] == "colour"
    again = await api.post(
        set_url(tenant, created, "/columns"), json={"name": "colour"}, headers=tenant.headers
    )
    assert_error(again, 409, "conflict")
    # Rows already hold prices: the column cannot become text or go away.
    retyped = [{**c, "type": "text"} if c["name"] == "price" else c for c in PRODUCT_COLUMNS]
    refused = await api.patch(
        set_url(tenant, created), json={"columns": retyped}, headers=tenant.headers
    )
    assert "cannot change type" in assert_error(refused, 422)["error"]["message"]

    deleted = await api.delete(set_url(tenant, created), headers=tenant.headers)
    assert deleted.status_code == 204
    assert_error(await api.get(set_url(tenant, created), headers=tenant.headers), 404)
    assert_error(await api.get(set_url(tenant, created, "/rows"), headers=tenant.headers), 404)


async def test_rows_are_typed_updated_and_deleted(api: httpx.AsyncClient, tenant: Tenant):
    products = await new_set(api, tenant)
    lamp_id, chair_id = await add_rows(api, tenant, products, PRODUCTS[:2])
    [desk_id] = await add_rows(api, tenant, products, PRODUCTS[2])
    assert lamp_id < chair_id < desk_id

    wrong_type = await api.post(
        set_url(tenant, products, "/rows"),
        json=[PRODUCTS[0], {"name": "x", "price": "cheap"}],
        headers=tenant.headers,
    )
    body = assert_error(wrong_type, 422, "invalid_input")
    assert "row 2" in body["error"]["message"] and "'price'" in body["error"]["message"]
    unknown = await api.post(
        set_url(tenant, products, "/rows"), json={"name": "x", "size": 3}, headers=tenant.headers
    )
    assert "unknown column 'size'" in assert_error(unknown, 422)["error"]["message"]

    changed = await api.patch(
        set_url(tenant, products, f"/rows/{lamp_id}"),
        json={"notes": "A brass reading lamp", "sale": None},
        headers=tenant.headers,
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["data"] == {
        "name": "lamp",
        "notes": "A brass reading lamp",
        "price": 25.5,
        "stock": 3,
    }
    hits = (await search(api, tenant, products, query="brass")).json()
    assert [hit["row_id"] for hit in hits] == [lamp_id]

    deleted = await api.delete(
        set_url(tenant, products, f"/rows/{chair_id}"), headers=tenant.headers
    )
    assert deleted.status_code == 204
    missing = await api.get(set_url(tenant, products, f"/rows/{chair_id}"), headers=tenant.headers)
    assert_error(missing, 404)
    after = (await api.get(set_url(tenant, products), headers=tenant.headers)).json()
    assert after["row_count"] == 2
    assert [r["id"] for r in await all_rows(api, tenant, products)] == [lamp_id, desk_id]


async def test_rows_are_filtered_by_each_kind_of_filter_and_paged(
    api: httpx.AsyncClient, tenant: Tenant
):
    products = await new_set(api, tenant)
    await add_rows(api, tenant, products, PRODUCTS)

    def where(column: str, op: str, value: Any = None) -> dict[str, Any]:
        return {"column": column, "op": op, "value": value}

    assert await names_where(api, tenant, products, where("name", "eq", "desk")) == ["desk"]
    assert await names_where(api, tenant, products, where("sale", "eq", True)) == [
        "lamp",
        "100% cotton_rug",
    ]
    # A row without the value is "not equal" too.
    assert await names_where(api, tenant, products, where("sale", "ne", True)) == ["chair", "desk"]
    assert await names_where(
        api, tenant, products, where("price", "gte", 40), where("price", "lt", 300)
    ) == ["chair", "100% cotton_rug"]
    # A number given as text (as from a form) is compared as the column's type.
    assert await names_where(api, tenant, products, where("stock", "eq", "0")) == ["chair"]
    assert await names_where(api, tenant, products, where("notes", "contains", "DESK")) == [
        "lamp",
        "desk",
    ]
    # LIKE's wildcards in a value are plain characters.
    assert await names_where(api, tenant, products, where("name", "contains", "%")) == [
        "100% cotton_rug"
    ]
    assert await names_where(api, tenant, products, where("name", "contains", "n_r")) == [
        "100% cotton_rug"
    ]
    assert await names_where(api, tenant, products, where("sale", "exists")) == [
        "lamp",
        "chair",
        "100% cotton_rug",
    ]
    assert await names_where(api, tenant, products, where("sale", "exists", False)) == ["desk"]

    seen: list[str] = []
    cursor = None
    for _ in range(3):
        params: dict[str, Any] = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        page = (
            await api.get(set_url(tenant, products, "/rows"), params=params, headers=tenant.headers)
        ).json()
        seen += [row["data"]["name"] for row in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [p["name"] for p in PRODUCTS]

    bad_op = await api.get(
        set_url(tenant, products, "/rows"),
        params={"filters": json.dumps([where("price", "near", 3)])},
        headers=tenant.headers,
    )
    assert assert_error(bad_op, 422)["error"]["details"][0]["field"] == "filters"
    unknown = await api.get(
        set_url(tenant, products, "/rows"),
        params={"filters": json.dumps([where("size", "eq", 3)])},
        headers=tenant.headers,
    )
    assert "unknown column 'size'" in assert_error(unknown, 422)["error"]["message"]
    range_on_text = await api.get(
        set_url(tenant, products, "/rows"),
        params={"filters": json.dumps([where("name", "gt", 3)])},
        headers=tenant.headers,
    )
    assert_error(range_on_text, 422)
    not_json = await api.get(
        set_url(tenant, products, "/rows"), params={"filters": "[{"}, headers=tenant.headers
    )
    assert_error(not_json, 422)


async def test_csv_jsonl_json_and_text_imports_add_rows_and_record_jobs(
    api: httpx.AsyncClient, tenant: Tenant
):
    products = await new_set(api, tenant)
    csv_file = (
        "\ufeffname,notes,price,stock,sale\n"
        'lamp,"A warm lamp, with\na second line",25.5,3,true\n'
        "chair,,80,0,no\n"
    ).encode()
    imported = await upload(api, tenant, products, "stock.csv", csv_file)
    assert imported.status_code == 201, imported.text
    job = imported.json()
    assert (job["kind"], job["status"], job["done"], job["total"]) == ("import", "succeeded", 2, 2)
    jsonl = b'{"name": "desk", "price": 300}\n\n{"name": "rug", "sale": false}\n'
    assert (await upload(api, tenant, products, "more.jsonl", jsonl)).json()["done"] == 2
    json_file = json.dumps([{"name": "shelf", "stock": 4}]).encode()
    as_json = await upload(api, tenant, products, "upload.bin", json_file, format="json")
    assert as_json.json()["done"] == 1

    rows = [row["data"] for row in await all_rows(api, tenant, products)]
    assert rows == [
        {
            "name": "lamp",
            "notes": "A warm lamp, with\na second line",
            "price": 25.5,
            "stock": 3,
            "sale": True,
        },
        {"name": "chair", "price": 80, "stock": 0, "sale": False},
        {"name": "desk", "price": 300},
        {"name": "rug", "sale": False},
        {"name": "shelf", "stock": 4},
    ]

    notes = await new_set(api, tenant, name="notes", columns=[])
    words = " ".join(f"w{i}" for i in range(10))
    text = await api.post(
        set_url(tenant, notes, "/imports/text"),
        json={"text": words, "chunk_size": 4, "overlap": 1, "source": "memo"},
        headers=tenant.headers,
    )
    assert text.status_code == 201, text.text
    chunks = [row["data"] for row in await all_rows(api, tenant, notes)]
    assert chunks == [
        {"text": "w0 w1 w2 w3", "source": "memo", "chunk": 1},
        {"text": "w3 w4 w5 w6", "source": "memo", "chunk": 2},
        {"text": "w6 w7 w8 w9", "source": "memo", "chunk": 3},
    ]

    jobs = await items_of(api, set_url(tenant, products, "/jobs"), tenant.headers)
    assert len(jobs) == 3 and {j["status"] for j in jobs} == {"succeeded"}
    one = await api.get(tenant.url(f"/knowledge/jobs/{jobs[0]['id']}"), headers=tenant.headers)
    assert one.json()["id"] == jobs[0]["id"]


async def test_a_bad_import_is_refused_whole_and_its_job_says_why(
    api: httpx.AsyncClient, tenant: Tenant
):
    products = await new_set(api, tenant)
    good_then_bad = b"name,price\nlamp,25\nchair,cheap\n"
    refused = await upload(api, tenant, products, "p.csv", good_then_bad)
    message = assert_error(refused, 422)["error"]["message"]
    assert "CSV record 2, column 'price'" in message and "not a number" in message
    unknown = await upload(api, tenant, products, "p.csv", b"name,size\nlamp,3\n")
    assert "unknown columns: size" in assert_error(unknown, 422)["error"]["message"]
    not_objects = await upload(api, tenant, products, "p.json", b'{"name": "lamp"}')
    assert_error(not_objects, 422)
    broken = await upload(api, tenant, products, "p.jsonl", b'{"name": "lamp"}\n{"name": \n')
    assert "line 2" in assert_error(broken, 422)["error"]["message"]
    no_format = await upload(api, tenant, products, "p.xlsx", b"x")
    assert assert_error(no_format, 422)["error"]["details"][0]["field"] == "format"

    assert await all_rows(api, tenant, products) == []
    jobs = await items_of(api, set_url(tenant, products, "/jobs"), tenant.headers)
    failed = [job for job in jobs if job["status"] == "failed"]
    assert len(failed) == 4
    assert all(job["error"] and job["done"] == 0 for job in failed)


async def stream(lines: Iterator[bytes]) -> AsyncIterator[bytes]:
    for line in lines:
        yield line


def multipart(filename: str, body: Iterator[bytes]) -> tuple[dict[str, str], Iterator[bytes]]:
    """A multipart upload built as it is sent, so the test never holds the file."""
    boundary = "knowledge-test-boundary"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
        f'filename="{filename}"\r\nContent-Type: application/octet-stream\r\n\r\n'
    ).encode()

    def parts() -> Iterator[bytes]:
        yield head
        yield from body
        yield f"\r\n--{boundary}--\r\n".encode()

    return {"Content-Type": f"multipart/form-data; boundary={boundary}"}, parts()


async def test_an_import_over_the_row_limit_is_refused_and_the_set_is_unchanged(
    api: httpx.AsyncClient, tenant: Tenant
):
    counters = await new_set(api, tenant, name="counters", columns=[])
    await add_rows(api, tenant, counters, {"n": -1})
    rows = (f'{{"n": {i}}}\n'.encode() for i in range(MAX_IMPORT_ROWS + 1))
    headers, body = multipart("many.jsonl", rows)
    refused = await api.post(
        set_url(tenant, counters, "/imports"),
        content=stream(body),
        headers={**tenant.headers, **headers},
    )
    assert f"more than {MAX_IMPORT_ROWS} rows" in assert_error(refused, 413)["error"]["message"]
    after = (await api.get(set_url(tenant, counters), headers=tenant.headers)).json()
    assert after["row_count"] == 1
    assert [r["data"] for r in await all_rows(api, tenant, counters)] == [{"n": -1}]


async def test_an_upload_over_100_mb_is_refused_and_the_set_is_unchanged(
    api: httpx.AsyncClient, tenant: Tenant
):
    counters = await new_set(api, tenant, name="counters", columns=[])
    await add_rows(api, tenant, counters, {"n": -1})
    # Blank lines: no rows, so the byte limit is what stops it.
    line = b" " * 1023 + b"\n"
    lines = (line for _ in range(MAX_IMPORT_BYTES // len(line) + 1))
    headers, body = multipart("big.jsonl", lines)
    refused = await api.post(
        set_url(tenant, counters, "/imports"),
        content=stream(body),
        headers={**tenant.headers, **headers},
    )
    assert "larger than 100 MB" in assert_error(refused, 413)["error"]["message"]
    assert [r["data"] for r in await all_rows(api, tenant, counters)] == [{"n": -1}]
    [job] = await items_of(api, set_url(tenant, counters, "/jobs"), tenant.headers)
    assert job["status"] == "failed" and "100 MB" in job["error"]


async def test_export_csv_round_trips_through_an_import(api: httpx.AsyncClient, tenant: Tenant):
    products = await new_set(api, tenant)
    await add_rows(api, tenant, products, PRODUCTS)
    exported = await api.get(set_url(tenant, products, "/export.csv"), headers=tenant.headers)
    assert exported.status_code == 200
    assert exported.headers["content-type"].startswith("text/csv")
    records = list(csv.reader(io.StringIO(exported.text)))
    assert records[0] == [c["name"] for c in PRODUCT_COLUMNS]
    assert records[3] == ["desk", "A standing desk", "300", "7", ""]

    copy = await new_set(api, tenant, name="copy")
    imported = await upload(api, tenant, copy, "products.csv", exported.content)
    assert imported.json()["done"] == len(PRODUCTS)
    rows = [row["data"] for row in await all_rows(api, tenant, copy)]
    assert rows == PRODUCTS

    loose = await new_set(api, tenant, name="loose", columns=[])
    await add_rows(api, tenant, loose, [{"a": 1}, {"b": {"x": [1, 2]}, "a": 2}])
    text = (await api.get(set_url(tenant, loose, "/export.csv"), headers=tenant.headers)).text
    assert text == 'a,b\n1,\n2,"{""x"": [1, 2]}"\n'


async def test_export_csv_writes_formula_like_text_as_plain_text(
    api: httpx.AsyncClient, tenant: Tenant
):
    notes = await new_set(api, tenant, name="notes", columns=[])
    attacks = ['=HYPERLINK("http://evil.example","x")', "+1+cmd|' /C calc'!A0", "-2+3", "@SUM(A1)"]
    await add_rows(api, tenant, notes, [{"text": attack} for attack in attacks] + [{"n": -5}])
    exported = await api.get(set_url(tenant, notes, "/export.csv"), headers=tenant.headers)
    records = list(csv.reader(io.StringIO(exported.text)))
    cells = [record[0] for record in records[1:5]]
    assert cells == ["'" + attack for attack in attacks]
    assert records[5] == ["", "-5"]  # a number stays a number


async def test_a_csv_import_with_a_nul_character_is_refused_and_stores_nothing(
    api: httpx.AsyncClient, tenant: Tenant
):
    products = await new_set(api, tenant)
    refused = await upload(
        api, tenant, products, "nul.csv", b"name,notes\nlamp,bright\ndesk,a\x00b\n"
    )
    body = assert_error(refused, 422, "invalid_input")
    assert "NUL" in body["error"]["message"] and "notes" in body["error"]["message"]
    assert await all_rows(api, tenant, products) == []


async def test_lexical_search_puts_the_row_that_answers_first(
    api: httpx.AsyncClient, tenant: Tenant
):
    facts = await new_set(api, tenant, name="facts", columns=[{"name": "text"}, {"name": "topic"}])
    topics = ["geography", "geography", "science", "geography", "science"]
    ids = await add_rows(
        api, tenant, facts, [{"text": t, "topic": k} for t, k in zip(FACTS, topics, strict=True)]
    )
    cases = {
        "What is the capital city of France?": ids[0],
        "highest mountain in the world": ids[1],
        "at what temperature does water boil": ids[2],
        "deepest ocean": ids[3],
        "how do bees talk": ids[4],
    }
    for query, expected in cases.items():
        response = await search(api, tenant, facts, query=query, top_k=3)
        assert response.status_code == 200, response.text
        hits = response.json()
        assert hits[0]["row_id"] == expected, (query, hits)
        assert hits[0]["row"]["text"] == FACTS[ids.index(expected)]
        assert all(a["score"] >= b["score"] for a, b in itertools.pairwise(hits))

    sea_level = await search(
        api,
        tenant,
        facts,
        query="sea level",
        filters=[{"column": "topic", "op": "eq", "value": "science"}],
    )
    assert [hit["row_id"] for hit in sea_level.json()] == [ids[2]]

    # Without an embedding provider, a search that names no mode is lexical...
    default = await api.post(
        set_url(tenant, facts, "/search"), json={"query": "deepest ocean"}, headers=tenant.headers
    )
    assert default.status_code == 200, default.text
    assert [hit["row_id"] for hit in default.json()][:1] == [ids[3]]
    # ... and one that asks for meaning is told it cannot have it.
    vector = await api.post(
        set_url(tenant, facts, "/search"),
        json={"query": "ocean", "mode": "vector"},
        headers=tenant.headers,
    )
    assert "embedding provider" in assert_error(vector, 422)["error"]["message"]


INJECTIONS = [
    "x' OR 1=1 --",
    "'; DROP TABLE knowledge_rows; --",
    '" OR "1"="1',
    "%",
    "_",
    "\\",
    "NEAR(",
    '"',
    "*",
    "lamp*",
    "NOT lamp",
    "lamp AND",
    "a) OR (b",
    "!lamp & | :*",
    "",
]


@pytest.mark.parametrize("value", INJECTIONS)
async def test_user_strings_in_filters_and_queries_are_only_data(
    api: httpx.AsyncClient, tenant: Tenant, value: str
):
    products = await new_set(api, tenant)
    await add_rows(api, tenant, products, PRODUCTS)
    for op in ("eq", "contains"):
        matched = await names_where(
            api, tenant, products, {"column": "name", "op": op, "value": value}
        )
        expected = [p["name"] for p in PRODUCTS if value in p["name"]] if op == "contains" else []
        assert matched == expected, (op, value)
    if value:
        response = await search(api, tenant, products, query=value, top_k=10)
        assert response.status_code == 200, response.text
        found = {hit["row"]["name"] for hit in response.json()}
        # Only rows sharing a word with the query come back.
        words = set(re.findall(r"\w+", value.lower()))
        sharing = {
            p["name"]
            for p in PRODUCTS
            if words & set(re.findall(r"\w+", f"{p['name']} {p['notes']}".lower()))
        }
        assert found <= sharing
    after = await all_rows(api, tenant, products)
    assert [row["data"] for row in after] == PRODUCTS


async def test_a_web_page_is_imported_as_its_readable_text(
    settings: Settings, temporal_env: WorkflowEnvironment, api: httpx.AsyncClient, tenant: Tenant
):
    page_server = LocalHttp().start()
    try:
        pages = await new_set(api, tenant, name="pages", columns=[])
        blocked = await api.post(
            set_url(tenant, pages, "/imports/url"),
            json={"url": f"{page_server.base}/page"},
            headers=tenant.headers,
        )
        assert_error(blocked, 422, "blocked_destination")

        allowed = settings.model_copy(update={"http_allow_networks": ["127.0.0.0/8"]})
        async with api_client(allowed, temporal_env.client) as local_api:
            imported = await local_api.post(
                set_url(tenant, pages, "/imports/url"),
                json={"url": f"{page_server.base}/page", "chunk_size": 50, "overlap": 5},
                headers=tenant.headers,
            )
            assert imported.status_code == 201, imported.text
            missing = await local_api.post(
                set_url(tenant, pages, "/imports/url"),
                json={"url": f"{page_server.base}/status/404"},
                headers=tenant.headers,
            )
            assert "HTTP 404" in assert_error(missing, 422)["error"]["message"]
        [row] = await all_rows(api, tenant, pages)
        assert row["data"] == {
            "text": "Hello World",
            "source": f"{page_server.base}/page",
            "chunk": 1,
        }
    finally:
        page_server.stop()


async def test_another_tenant_cannot_see_or_touch_a_set(
    api: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant
):
    products = await new_set(api, tenant)
    [row_id] = await add_rows(api, tenant, products, PRODUCTS[0])
    imported = await upload(api, tenant, products, "one.jsonl", b'{"name": "rug"}\n')
    job = imported.json()
    theirs = other_tenant.headers
    # Their own project's URLs with our ids, and our project's URLs with their token.
    for url in (set_url(other_tenant, products), set_url(tenant, products)):
        for method, path, body in [
            ("GET", "", None),
            ("PATCH", "", {"name": "mine"}),
            ("GET", "/rows", None),
            ("GET", f"/rows/{row_id}", None),
            ("PATCH", f"/rows/{row_id}", {"name": "mine"}),
            ("DELETE", f"/rows/{row_id}", None),
            ("POST", "/rows", {"name": "mine"}),
            ("POST", "/search", {"query": "lamp", "mode": "lexical"}),
            ("GET", "/export.csv", None),
            ("GET", "/jobs", None),
            ("DELETE", "", None),
        ]:
            response = await api.request(method, url + path, json=body, headers=theirs)
            assert_error(response, 404)
    for owner in (other_tenant, tenant):
        stolen = await api.get(owner.url(f"/knowledge/jobs/{job['id']}"), headers=theirs)
        assert_error(stolen, 404)
    # Another set's row is not reachable through one's own set either.
    own = await new_set(api, other_tenant)
    assert_error(await api.get(set_url(other_tenant, own, f"/rows/{row_id}"), headers=theirs), 404)
    still = await api.get(set_url(tenant, products, f"/rows/{row_id}"), headers=tenant.headers)
    assert still.json()["data"] == PRODUCTS[0]


async def test_bad_input_is_a_4xx_naming_the_field(api: httpx.AsyncClient, tenant: Tenant):
    sets = tenant.url("/knowledge/sets")
    bad_column = await api.post(
        sets, json={"name": "x", "columns": [{"name": "bad name"}]}, headers=tenant.headers
    )
    assert "columns" in assert_error(bad_column, 422)["error"]["message"]
    bad_type = await api.post(
        sets, json={"name": "x", "columns": [{"name": "a", "type": "date"}]}, headers=tenant.headers
    )
    assert_error(bad_type, 422)
    assert_error(await api.post(sets, json={"name": ""}, headers=tenant.headers), 422)
    products = await new_set(api, tenant)
    overlap = await api.post(
        set_url(tenant, products, "/imports/text"),
        json={"text": "a b c", "chunk_size": 5, "overlap": 5},
        headers=tenant.headers,
    )
    assert "overlap" in assert_error(overlap, 422)["error"]["message"]
    no_query = await search(api, tenant, products, query="")
    assert "query" in assert_error(no_query, 422)["error"]["message"]
    huge_k = await search(api, tenant, products, query="lamp", top_k=1000)
    assert "top_k" in assert_error(huge_k, 422)["error"]["message"]
    bad_row_id = await api.get(set_url(tenant, products, "/rows/abc"), headers=tenant.headers)
    assert_error(bad_row_id, 422)
    # Beyond what the id column holds: refused before the database sees it.
    huge_row_id = await api.get(set_url(tenant, products, f"/rows/{2**40}"), headers=tenant.headers)
    assert "row_id" in assert_error(huge_row_id, 422)["error"]["message"]
    huge_cursor = await api.get(
        set_url(tenant, products, "/rows"),
        params={"cursor": cursor_of([2**40])},
        headers=tenant.headers,
    )
    assert "cursor" in assert_error(huge_cursor, 422)["error"]["message"]
    too_many = await api.get(
        set_url(tenant, products, "/rows"), params={"limit": 1001}, headers=tenant.headers
    )
    assert "limit" in assert_error(too_many, 422)["error"]["message"]
    unknown_set = await api.get(tenant.url("/knowledge/sets/nope"), headers=tenant.headers)
    assert_error(unknown_set, 404)
    no_token = await api.get(sets)
    assert_error(no_token, 401)
