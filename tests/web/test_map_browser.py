"""The live map in a real headless Chromium (Debian's, driven by Playwright): start the demo as a
newcomer does, wait for the layers, click a robot, send goTo, and see its status reach OK and
the robot move. Saves a screenshot (CITYTWIN_ARTIFACTS, default the test's folder)."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.demo.test_demo_command import reported, start_demo
from tests.web.test_map_routes import needs_npm, npm_assets  # noqa: F401

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ROBOT = "urn:ngsi-ld:Robot:sstm-guide-1"


@needs_npm
async def test_click_a_robot_and_send_it_somewhere(tmp_path: Path) -> None:
    from playwright import async_api as playwright

    if not Path(CHROMIUM).exists():
        pytest.fail("chromium is not installed (apt-get install chromium; ./run test does it)")
    demo, port, log = start_demo(tmp_path, "--robot-speed", "20")
    url = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(base_url=url, trust_env=False) as api:
            start = await reported(api, log)
            async with playwright.async_playwright() as p:
                browser = await p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
                page = await browser.new_page(viewport={"width": 1280, "height": 800})
                await page.goto(url + "/")
                await page.wait_for_function(READY, timeout=30000)
                await _click(page, *start["location"]["value"]["coordinates"])
                await page.wait_for_selector("#panel:not([hidden])", timeout=10000)
                assert "Guide robot 1" in await page.inner_text("#name")
                await _readable(page)
                await page.select_option("#exhibit", "Robot World")
                await page.click("button[data-cmd=goTo]")
                status = page.locator(".status[data-command=goTo]")
                await status.filter(has_text="OK").wait_for(timeout=15000)
                moved = await _arrived(api)
                where = moved["location"]["value"]["coordinates"]
                assert where != start["location"]["value"]["coordinates"]
                artifacts = Path(os.environ.get("CITYTWIN_ARTIFACTS", tmp_path))
                await _screenshot(page, artifacts)
                await page.set_viewport_size({"width": 390, "height": 844})  # a phone
                await page.wait_for_timeout(500)
                panel = await page.locator("#panel").bounding_box()
                assert panel is not None and panel["y"] > 844 / 3 and panel["width"] >= 380
                await page.screenshot(path=str(artifacts / "map-phone.png"))
                await browser.close()
    finally:
        demo.send_signal(signal.SIGTERM)
        demo.wait(timeout=20)


FLAGS = ["--no-sandbox", "--use-angle=swiftshader", "--enable-unsafe-swiftshader"]  # WebGL
READY = "document.body.dataset.ready === 'true'"


async def _click(page: Any, lon: float, lat: float) -> None:
    """Zoom to a place and click it where the map draws it."""
    await page.evaluate(f"window.citytwinMap.jumpTo({{center: [{lon}, {lat}], zoom: 19}})")
    await page.wait_for_timeout(500)
    x, y = await page.evaluate(f"Object.values(window.citytwinMap.project([{lon}, {lat}]))")
    await page.mouse.click(x, y)


async def _readable(page: Any) -> None:
    """The panel speaks plainly (names and units, the NGSI-LD name as a tooltip), places carry
    their names, the chart shows the last hour and asks the broker for 15-minute averages of
    the last day."""
    battery = page.locator("#attrs td[title=batteryLevel]")
    assert await battery.inner_text() == "Battery"
    row = page.locator("#attrs tr", has=page.locator("td[title=batteryLevel]"))
    assert await row.locator("td.unit").inner_text() == "%"
    places = await page.locator(".label").all_inner_texts()
    assert "Shanghai Science and Technology Museum" in places and len(places) == 10
    near = page.locator("#attrs tr", has=page.locator("td[title=refPointOfInterest]"))
    assert "Science and Technology Museum" in await near.inner_text()  # the link, by name
    caption = page.locator("#chart-label")
    await caption.filter(has_text="Battery %, last hour").wait_for(timeout=10000)
    async with page.expect_response(lambda r: "aggrMethods=avg" in r.url) as answer:
        await page.click("#spans button[data-span=day]")
    assert (await answer.value).status == 200
    await page.click("#spans button[data-span=hour]")


async def _screenshot(page: Any, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    await page.evaluate("window.citytwinMap.jumpTo({center: [121.50, 31.17], zoom: 9.3})")
    await page.wait_for_timeout(1000)
    await page.screenshot(path=str(folder / "map.png"))


async def _arrived(api: httpx.AsyncClient) -> dict:
    for _ in range(200):
        body = (await api.get(f"/ngsi-ld/v1/entities/{ROBOT}")).json()
        if (
            body.get("nearExhibit", {}).get("value") == "Robot World"
            and body["state"]["value"] != "moving"
        ):
            return body
        await asyncio.sleep(0.1)
    raise AssertionError(f"the robot did not get to Robot World: {body}")
