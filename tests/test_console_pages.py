"""The console's other pages through httpx against the real app and worker: tools (a run
form made from the params, the run with each step's output, its history), knowledge (rows a
page at a time, search, a text import and its job), workforces (the graph drawn, its tasks)
and usage (credits and runs per day as bars). Each checks membership and role as the API
does: a viewer reads but runs and imports nothing, another project's ids are not found."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import httpx
from temporalio.worker import Worker

from tests.support import Tenant, create_token
from tests.test_agent_tasks import FINAL, make_tool, start, wait_for
from tests.test_console import csrf_of, signed_in
from tests.test_console_agents import make_set
from tests.test_workforce_tasks import echo_workforce
from tests.test_workforce_tasks import start as start_workforce_task


async def typed_tool(api: httpx.AsyncClient, tenant: Tenant) -> str:
    response = await api.post(
        tenant.url("/tools"),
        json={
            "name": "Greeter",
            "params": [
                {"name": "who", "type": "text"},
                {"name": "times", "type": "integer", "default": 1},
                {"name": "loud", "type": "boolean", "required": False},
                {"name": "tone", "type": "enum", "options": ["warm", "dry"], "default": "dry"},
            ],
            "steps": [
                {
                    "name": "say",
                    "type": "template",
                    "template": "{{ params.tone }} hi {{ params.who }} x{{ params.times }}"
                    "{% if params.loud %}!{% endif %}",
                }
            ],
        },
        headers=tenant.headers,
    )
    assert response.status_code == 201, response.text
    tool_id: str = response.json()["id"]
    return tool_id


async def test_a_tool_runs_from_the_form_its_params_make_and_shows_each_step(
    api: httpx.AsyncClient, tenant: Tenant, worker: Worker
):
    tool = await typed_tool(api, tenant)
    await signed_in(api, tenant.token)
    assert f'href="/tools/{tool}"' in (await api.get("/tools")).text
    page = await api.get(f"/tools/{tool}")
    assert '<label for="param-who">who (required)</label>' in page.text
    assert '<input type="number" id="param-times" name="param.times" value="1">' in page.text
    assert '<input type="checkbox" id="param-loud" name="param.loud">' in page.text
    assert '<option value="warm">warm</option>' in page.text

    form = {"param.who": "Ada", "param.times": "3", "param.loud": "on", "param.tone": "warm"}
    ran = await api.post(f"/tools/{tool}/runs", data={**form, "csrf": csrf_of(page)})
    assert ran.status_code == 303, ran.text
    run_url = ran.headers["location"]
    assert re.fullmatch(r"/tool-runs/[0-9a-f-]+", run_url)
    run_page = await api.get(run_url)
    assert '<dd id="status">succeeded</dd>' in run_page.text, run_page.text
    assert "warm hi Ada x3!" in run_page.text and "<code>say</code> (template" in run_page.text
    assert f'href="{run_url}"' in (await api.get(f"/tools/{tool}")).text

    bad = await api.post(f"/tools/{tool}/runs", data={"param.times": "many", "csrf": csrf_of(page)})
    assert bad.status_code == 422 and "params.times: not a integer" in bad.text
    missing = await api.post(f"/tools/{tool}/runs", data={"csrf": csrf_of(page)})
    assert missing.status_code == 422 and "who" in missing.text


async def test_a_knowledge_set_pages_its_rows_searches_them_and_imports_text(
    api: httpx.AsyncClient, tenant: Tenant, worker: Worker
):
    set_id = await make_set(api, tenant)
    rows = [
        {"text": f"row number {n}", "topic": "refunds" if n == 7 else "other"} for n in range(30)
    ]
    added = await api.post(
        tenant.url(f"/knowledge/sets/{set_id}/rows"), json=rows, headers=tenant.headers
    )
    assert added.status_code == 201, added.text
    await signed_in(api, tenant.token)
    assert f'href="/knowledge/{set_id}"' in (await api.get("/knowledge")).text

    first = await api.get(f"/knowledge/{set_id}")
    assert "30 rows." in first.text and "row number 0" in first.text
    assert "row number 29" not in first.text
    [cursor] = re.findall(r'href="/knowledge/[^"?]+\?cursor=([^"]+)"', first.text)
    second = await api.get(f"/knowledge/{set_id}?cursor={cursor}")
    assert "row number 29" in second.text and "row number 0<" not in second.text

    found = await api.get(f"/knowledge/{set_id}?q=refunds")
    hits = found.text.split('<ol class="hits">')[1].split("</ol>")[0]
    assert "row number 7" in hits and "row number 8" not in hits

    imported = await api.post(
        f"/knowledge/{set_id}/imports",
        data={"text": "Returns are free within thirty days.", "csrf": csrf_of(first)},
    )
    assert imported.status_code == 303
    after = await api.get(imported.headers["location"])
    assert "31 rows." in after.text and "import: succeeded" in after.text
    empty = await api.post(
        f"/knowledge/{set_id}/imports", data={"text": "", "csrf": csrf_of(first)}
    )
    assert empty.status_code == 422


async def test_a_workforce_page_draws_its_graph_and_lists_its_tasks(
    api: httpx.AsyncClient, tenant: Tenant, worker: Worker
):
    workforce, _ = await echo_workforce(api, tenant, "triage", "billing", "reply")
    created = await start_workforce_task(api, tenant, workforce, "refund order 7")
    await wait_for(api, tenant, created["id"], FINAL)
    await signed_in(api, tenant.token)
    assert f'href="/workforces/{workforce}"' in (await api.get("/workforces")).text

    page = await api.get(f"/workforces/{workforce}")
    svg = page.text.split('<svg class="graph"')[1].split("</svg>")[0]
    boxes = dict(re.findall(r'data-node="(\w+)"><rect x="(\d+)"', svg))
    assert set(boxes) == {"triage", "billing", "reply"}
    # Left to right in the order the work goes.
    assert int(boxes["triage"]) < int(boxes["billing"]) < int(boxes["reply"])
    assert svg.count('<g class="edge">') == 2
    assert "<td><code>triage</code></td><td><code>billing</code></td><td>handover</td>" in page.text
    assert f'href="/tasks/{created["id"]}"' in page.text


async def test_usage_draws_credits_and_runs_per_day(
    api: httpx.AsyncClient, tenant: Tenant, worker: Worker
):
    tool = await make_tool(api, tenant)
    for _ in range(2):
        run = await api.post(
            tenant.url(f"/tools/{tool}/runs"),
            json={"params": {"text": "x"}, "wait": True},
            headers=tenant.headers,
        )
        assert run.json()["status"] == "succeeded", run.text
    report = (await api.get(tenant.url("/usage"), headers=tenant.headers)).json()
    [today] = report["rows"]
    await signed_in(api, tenant.token)
    page = await api.get("/usage")
    assert page.status_code == 200
    charts = page.text.split("<svg")[1:]
    assert len(charts) == 2
    runs_chart = charts[1]
    bars = re.findall(r'data-day="([\d-]+)" x="\d+" y="\d+" width="\d+" height="(\d+)"', runs_chart)
    assert len(bars) == 30
    heights = dict(bars)
    assert heights[today["group"]] == "120"  # the only day with runs is the highest bar
    assert all(h == "0" for day, h in heights.items() if day != today["group"])
    assert f"<title>{today['group']}: {today['runs']}" in runs_chart


async def test_a_viewer_reads_the_pages_but_runs_and_imports_nothing(
    api: httpx.AsyncClient, tenant: Tenant, worker: Worker
):
    tool = await make_tool(api, tenant)
    set_id = await make_set(api, tenant)
    viewer = await create_token(api, tenant.headers, role="viewer")
    await signed_in(api, viewer["token"])
    for url in ("/tools", f"/tools/{tool}", "/knowledge", f"/knowledge/{set_id}", "/usage"):
        assert (await api.get(url)).status_code == 200, url
    page = await api.get(f"/tools/{tool}")
    assert (
        "/runs" not in page.text
        and "Import text" not in (await api.get(f"/knowledge/{set_id}")).text
    )
    csrf = csrf_of(page)
    ran = await api.post(f"/tools/{tool}/runs", data={"param.text": "x", "csrf": csrf})
    assert ran.status_code == 403
    imported = await api.post(f"/knowledge/{set_id}/imports", data={"text": "x", "csrf": csrf})
    assert imported.status_code == 403
    runs = await api.get(tenant.url("/tool-runs"), headers=tenant.headers)
    assert runs.json()["items"] == []


async def test_another_projects_tools_sets_workforces_and_runs_are_not_found(
    api: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant, worker: Worker
):
    tool = await make_tool(api, tenant)
    set_id = await make_set(api, tenant)
    workforce, _ = await echo_workforce(api, tenant, "solo")
    run = await api.post(
        tenant.url(f"/tools/{tool}/runs"),
        json={"params": {"text": "secret-ish"}, "wait": True},
        headers=tenant.headers,
    )
    run_id = run.json()["id"]
    await signed_in(api, other_tenant.token)
    for url in (
        f"/tools/{tool}",
        f"/tool-runs/{run_id}",
        f"/knowledge/{set_id}",
        f"/workforces/{workforce}",
    ):
        hidden = await api.get(url)
        assert hidden.status_code == 404, url
        assert "secret-ish" not in hidden.text
    page = await api.get("/tools")
    assert f"/tools/{tool}" not in page.text
    csrf = csrf_of(page)
    assert (
        await api.post(f"/tools/{tool}/runs", data={"param.text": "x", "csrf": csrf})
    ).status_code == 404
    assert (
        await api.post(f"/knowledge/{set_id}/imports", data={"text": "x", "csrf": csrf})
    ).status_code == 404


class Fields(HTMLParser):
    """The form fields of a page and the ids its labels name."""

    def __init__(self) -> None:
        super().__init__()
        self.fields: list[dict[str, str | None]] = []
        self.labelled: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "label" and found.get("for"):
            self.labelled.add(found["for"] or "")
        elif tag in {"select", "textarea"} or (tag == "input" and found.get("type") != "hidden"):
            self.fields.append({"tag": tag, **found})


async def test_every_field_of_every_page_has_its_label(
    api: httpx.AsyncClient, tenant: Tenant, worker: Worker
):
    tool = await typed_tool(api, tenant)
    set_id = await make_set(api, tenant)
    workforce, agents = await echo_workforce(api, tenant, "solo")
    agent = agents["solo"]
    task_id = await start(api, tenant, agent, "hi")
    await wait_for(api, tenant, task_id, FINAL | {"idle"})
    await signed_in(api, tenant.token)
    pages = [
        "/sign-in",
        f"/tasks/{task_id}",
        "/agents",
        f"/agents/{agent}",
        f"/agents/{agent}/edit",
        "/chat",
        "/tasks?tab=all",
        "/tools",
        f"/tools/{tool}",
        "/knowledge",
        f"/knowledge/{set_id}",
        "/workforces",
        f"/workforces/{workforce}",
        "/usage",
        "/projects",
    ]
    checked = 0
    for url in pages:
        page = await api.get(url)
        assert page.status_code == 200, url
        parser = Fields()
        parser.feed(page.text)
        for field in parser.fields:
            assert field.get("id") in parser.labelled, (url, field)
            checked += 1
        # Actions are buttons in forms, not scripted links.
        assert "onclick" not in page.text and 'href="#"' not in page.text
    assert checked > 20
