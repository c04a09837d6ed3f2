"""Seed guide Phase 4 in a real browser: Debian chromium (headless) driven by Playwright.

An admin creates a tenant → the customer signs up with the invitation → uploads the
catalog and the interactions → trains → deploys → tests recommendations → creates an
API key → that key gets recommendations from the REST API through a real Envoy.
The console runs as `embrec console` (a real server, in its own process) in front of
the in-process services. Every step saves a screenshot (paths printed at the end).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.sampledata.generator import generate, write_csv
from tests.services.conftest import TEST_JWT_SECRET, RunningStack
from tests.support.servers import EnvoyProcess, free_port
from tests.support.tools import skip_unless_ci
from tests.ui.support import PASSWORD, make_admin, unique

pytestmark = pytest.mark.slow

CHROMIUM = Path("/usr/bin/chromium")
# Flags this sandbox-less, offline machine needs (env notes): no GPU, no QUIC, nothing
# phoning home; a fresh profile per run.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as reply:
            return bool(reply.status == 200)
    except OSError:
        return False


@pytest.fixture
def console_server(stack: RunningStack, tmp_path: Path) -> Iterator[str]:
    """`embrec console` as an operator starts it, aimed at the stack; yields its URL."""
    port = free_port()
    # Without pytest's marker variable: NiceGUI would take the child for a test run.
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")},
        "EMBREC_DATA_DIR": str(tmp_path / "console-data"),
        "EMBREC_JWT_SECRET": TEST_JWT_SECRET,
    }
    log = (tmp_path / "console.log").open("wb")
    process = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from services.cli import main; main()",
            "console",
            "--port",
            str(port),
            "--target",
            stack.address,
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while not _ready(f"{url}/login"):
            assert process.poll() is None, (tmp_path / "console.log").read_text()
            assert time.monotonic() < deadline, "the console did not start"
            time.sleep(0.3)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


@pytest.fixture
async def browser_page() -> AsyncIterator[Any]:
    if not CHROMIUM.exists():
        skip_unless_ci("Debian chromium is not installed (apt-get install chromium)")
    playwright_api = pytest.importorskip("playwright.async_api")
    profile = tempfile.mkdtemp(prefix="embrec-chromium-")
    async with playwright_api.async_playwright() as driver:
        context = await driver.chromium.launch_persistent_context(
            profile,
            executable_path=str(CHROMIUM),
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1280, "height": 900},
        )
        context.set_default_timeout(20_000)
        page = await context.new_page()
        try:
            yield page
        finally:
            await context.close()
            shutil.rmtree(profile, ignore_errors=True)


async def test_phase4_journey_in_a_real_browser(
    stack: RunningStack,
    console_server: str,
    browser_page: Any,
    envoy_for: Callable[[int], Awaitable[tuple[EnvoyProcess, int]]],
    tmp_path: Path,
) -> None:
    page = browser_page
    shots = tmp_path / "screenshots"
    shots.mkdir()
    step = [0]

    async def snap(name: str) -> None:
        step[0] += 1
        await page.screenshot(path=str(shots / f"{step[0]:02d}-{name}.png"), full_page=True)

    admin_email = await make_admin(stack)
    data = generate(users=400, items=300, interactions=8000, seed=7)
    items_csv, interactions_csv = write_csv(data, tmp_path / "sample")

    # Step 1: the admin logs in to the back office and creates the tenant.
    await page.goto(f"{console_server}/login")
    await page.get_by_label("E-mail", exact=True).fill(admin_email)
    await page.get_by_label("Password", exact=True).fill(PASSWORD)
    await page.get_by_role("button", name="Log in").click()
    await page.get_by_text("Platform health").wait_for()
    await snap("admin-dashboard")
    await page.goto(f"{console_server}/admin/tenants")
    await page.get_by_role("button", name="Create tenant").click()
    slug = unique("techgadgets")
    customer = f"admin@{slug}.example"
    await page.get_by_label("Name", exact=True).fill("TechGadgets")
    await page.get_by_label("Slug", exact=True).fill(slug)
    await page.get_by_label("Admin e-mail", exact=True).fill(customer)
    await page.get_by_role("button", name="Create", exact=True).click()
    await page.get_by_text("invitation token to sign up").wait_for()
    token = await page.locator(".invitation-token input").input_value()
    assert token
    await snap("tenant-created")
    await page.goto(f"{console_server}/logout")
    await page.get_by_text("New here?").wait_for()  # back on the login page

    # Step 2: the customer signs up with the invitation.
    await page.goto(f"{console_server}/signup?invitation={token}")
    await page.get_by_label("Your name", exact=True).fill("Tech Owner")
    await page.get_by_label("E-mail", exact=True).fill(customer)
    await page.get_by_label("Password (at least 10 characters)").fill(PASSWORD)
    await page.get_by_role("button", name="Sign up").click()
    await page.get_by_text("Recent uploads").wait_for()
    await snap("customer-dashboard")

    # Steps 3-4: catalog and interactions, dropped on the Data page.
    await page.goto(f"{console_server}/app/data")
    await page.locator(".upload-items input[type=file]").set_input_files(str(items_csv))
    await page.get_by_text("items.csv: succeeded").wait_for(timeout=60_000)
    await page.locator(".upload-interactions input[type=file]").set_input_files(
        str(interactions_csv)
    )
    await page.get_by_text("interactions.csv: succeeded").wait_for(timeout=60_000)
    await snap("data-uploaded")

    # Step 5: train now, and watch the job until it makes a model version.
    await page.goto(f"{console_server}/app/models")
    await page.get_by_role("button", name="Train now").click()
    await page.locator(".training-job").first.wait_for()
    await snap("training-started")
    await page.locator(".model-version").first.wait_for(timeout=300_000)
    await snap("model-ready")

    # Step 6: deploy it with 100 % of the traffic.
    await page.locator(".model-version").first.get_by_role("button", name="Deploy").click()
    await page.locator(".q-dialog").get_by_role("button", name="Deploy").click()
    await page.get_by_text("100 % traffic").wait_for()
    await snap("deployed")

    # Step 7: recommendations with scores on the Test page.
    await page.goto(f"{console_server}/app/test")
    user_id = data.interactions[0][0]
    await page.get_by_label("User id", exact=True).fill(user_id)
    # The retriever loads a new deployment's index in the background: until then the
    # page says it served popular items instead, so ask again until the model answers.
    caption = ""
    for attempt in range(60):
        await page.get_by_role("button", name="Get recommendations").click()
        await page.locator(".recommendation-caption").wait_for()
        caption = await page.locator(".recommendation-caption").inner_text()
        if "fallback" not in caption:
            break
        if attempt == 0:
            await snap("recommendations-while-index-loads")
        await asyncio.sleep(0.5)
    assert "fallback" not in caption, caption
    assert await page.locator(".recommended-item").count() == 10
    await snap("recommendations")

    # Step 8: an API key, shown once with a copy button.
    await page.goto(f"{console_server}/app/keys")
    await page.get_by_label("Name", exact=True).fill("Production - Website")
    await page.get_by_role("button", name="Create API key").click()
    await page.get_by_text("it is shown once").wait_for()
    secret = await page.locator(".api-key-secret input").input_value()
    assert secret.startswith("emb_live_")
    await snap("api-key")

    # Step 9: the key works against the REST API through Envoy.
    port = int(stack.address.rsplit(":", 1)[1])
    _, envoy_port = await envoy_for(port)
    category = data.items[0]["category"]
    async with httpx.AsyncClient(timeout=30) as client:
        reply = await client.post(
            f"http://127.0.0.1:{envoy_port}/api/v1/recommendations",
            headers={"Authorization": f"Bearer {secret}"},
            json={"user_id": user_id, "count": 5, "filters": {"category": category}},
        )
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert len(body["items"]) == 5
    assert {item["category"] for item in body["items"]} == {category}

    # Step 10: the customer's dashboard counts its API calls (this journey's, metered).
    await page.goto(f"{console_server}/app")
    await page.get_by_text("API calls (30 d)").wait_for()
    await page.locator(".usage-chart").wait_for(timeout=30_000)
    await page.wait_for_timeout(1500)  # let the chart's drawing animation finish
    await snap("customer-usage")

    # The same portal on a phone-sized screen: the navigation folds into the menu.
    await page.set_viewport_size({"width": 390, "height": 844})
    await page.goto(f"{console_server}/app/test")
    await page.get_by_role("button", name="Get recommendations").wait_for()
    await snap("phone-test-page")

    # Step 11: back office figures: KPIs, per-method latency, the tenant's health.
    await page.set_viewport_size({"width": 1280, "height": 900})
    await page.goto(f"{console_server}/logout")
    await page.get_by_label("E-mail", exact=True).fill(admin_email)
    await page.get_by_label("Password", exact=True).fill(PASSWORD)
    await page.get_by_role("button", name="Log in").click()
    await page.get_by_text("API calls (24 h)").wait_for()
    await page.wait_for_timeout(1500)
    await snap("admin-kpis")
    await page.goto(f"{console_server}/admin/monitoring")
    await page.get_by_text("Recommend", exact=True).first.wait_for(timeout=30_000)
    await snap("monitoring")
    await page.goto(f"{console_server}/admin/support")
    await page.get_by_text(slug).first.wait_for(timeout=30_000)
    await snap("support-health")
    print(f"screenshots: {shots}")
