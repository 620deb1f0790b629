"""The explorer in headless Chromium (Debian's package, via Playwright): a first enrolment, its feedback seen live."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest

from tests.explorer_world import explorer_world

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
# Screenshots a run leaves behind (for a person or CI to look at); not committed.
ARTIFACTS = ROOT / "test-artifacts"


def _chromium() -> str:
    """Debian's chromium (make test installs it when root); never a browser downloaded by Playwright."""
    found = os.environ.get("REGISTRY_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        pytest.skip("browser test skipped: no chromium on PATH (apt-get install chromium, or set REGISTRY_CHROMIUM)")
    return found


async def test_create_sandbox_enrol_from_the_form_and_see_the_funding_feedback_live(tmp_path: Path) -> None:
    executable = _chromium()
    from playwright.async_api import async_playwright

    async with explorer_world(tmp_path, seed=False) as world, async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        try:
            page = await browser.new_page(viewport={"width": 1500, "height": 1000})
            errors: list[str] = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            await page.goto(world.explorer.url)
            await page.wait_for_selector("body[data-ready=true]")

            await page.click("#sandbox-create")
            await page.wait_for_function("document.getElementById('md-key').value.startsWith('sk_test_')")
            await page.click("#sandbox-seed")
            await page.wait_for_function(
                "document.querySelectorAll('#school-select option').length > 2", timeout=30_000
            )
            # Pick a primary school from the seeded data: it becomes the acting school and the live panel's.
            await page.select_option("#school-select", index=1)
            school = await page.input_value("#md-school")
            assert school and await page.input_value("#live-school") == school
            await page.wait_for_function(f"document.getElementById('sandbox-info').textContent.includes('({school})')")

            await page.click("#live-subscribe")
            await page.wait_for_function("document.getElementById('live-status').textContent.startsWith('Subscribed')")
            await page.click("[data-method='registry.v1.RodService/RegisterEnrolment']")
            request = await page.input_value("#editor")
            assert f'"institution_code": "{school}"' in request and '"bsn": "9999' in request

            await page.click("#send")
            sent = time.monotonic()
            card = page.locator("#live-feed li.feedback").first
            await card.wait_for(timeout=2_000)
            arrived = time.monotonic() - sent
            assert await page.locator("#call-status").text_content() == "HTTP 200 OK"
            text = await card.text_content() or ""
            assert school in text and "funded (PROVISIONAL) SBX-FUNDED" in text
            assert arrived < 2.0

            ARTIFACTS.mkdir(exist_ok=True)
            await page.screenshot(path=str(ARTIFACTS / "explorer-live-feedback.png"))
            assert errors == []
        finally:
            await browser.close()
