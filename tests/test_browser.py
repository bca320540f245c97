"""End to end in a real browser: `prvr serve` on the demo's index, driven through Debian's
chromium and its chromedriver (README: Set up installs both; nothing is downloaded here).

The screenshot in the README is this test's: ``PRVR_SCREENSHOT=docs/serve.png pytest tests/test_browser.py``."""

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

CHROMIUM = os.environ.get("PRVR_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = os.environ.get("PRVR_CHROMEDRIVER") or shutil.which("chromedriver")
SET_UP = "apt-get install chromium chromium-driver (README: Set up), or point PRVR_CHROMIUM / PRVR_CHROMEDRIVER at them"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture()
def server(demo_run):
    work, summary = demo_run
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "prvr_cli", "serve", str(work / "index"), "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(f"{url}/api/info", timeout=2) as r:
                info = json.load(r)
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"prvr serve did not start: {proc.stdout.read()}")
            time.sleep(0.2)
    yield url, info, summary
    proc.terminate()
    proc.wait(10)


@pytest.fixture()
def browser():
    assert CHROMIUM and DRIVER, f"the browser test needs chromium and chromedriver: {SET_UP}"
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--window-size=1280,1000",
        "--autoplay-policy=no-user-gesture-required",
        "--mute-audio",
    ):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)  # a driver path: no download
    yield driver
    driver.quit()


def test_search_page_shows_cards_and_plays_the_moment(server, browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    url, info, summary = server
    text = summary["free_text"]["text"]
    wait = WebDriverWait(browser, 20)
    browser.get(url + "/")
    wait.until(lambda d: d.find_element(By.ID, "about").text)
    assert f"{info['videos']} videos" in browser.find_element(By.ID, "about").text
    # the footer links the report of the run the index was built from
    assert browser.find_element(By.CSS_SELECTOR, "#report-link a").get_attribute("href") == url + "/report"
    box = browser.find_element(By.ID, "q")
    box.clear()
    box.send_keys(text)
    browser.find_element(By.CSS_SELECTOR, "button[type=submit]").click()

    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#results .card")) > 0)
    cards = browser.find_elements(By.CSS_SELECTOR, "#results .card")
    with urllib.request.urlopen(f"{url}/api/search?k=12&q={urllib.parse.quote(text)}") as r:
        hits = json.load(r)["results"]
    assert len(cards) == len(hits) == 12
    # ranked as the API ranks them, each with its id, score and span
    for card, hit in zip(cards, hits):
        assert card.find_element(By.CSS_SELECTOR, ".title").text == f"{hit['rank']}. {hit['video']}"
        assert card.find_element(By.CSS_SELECTOR, ".score").text == f"score {hit['score']:.4f}"
    # every thumbnail decoded into a real picture
    wait.until(
        lambda d: d.execute_script(
            "const i = [...document.querySelectorAll('#results img.thumb')];"
            "return i.length > 0 && i.every(x => x.complete && x.naturalWidth > 0);"
        )
    )
    assert len(browser.find_elements(By.CSS_SELECTOR, "#results img.thumb")) == len(hits)

    pick = next(i for i, h in enumerate(hits) if h["confident"])
    hit = hits[pick]
    cards[pick].find_element(By.CSS_SELECTOR, "button.open").click()
    wait.until(lambda d: d.execute_script("return document.getElementById('video').readyState >= 1"))
    src, current, error = browser.execute_script(
        "const v = document.getElementById('video'); return [v.getAttribute('src'), v.currentTime, v.error];"
    )
    assert src == f"/media/{hit['video']}#t={hit['start']:.2f},{hit['end']:.2f}"
    assert error is None
    # the media fragment started the player at the moment (and it may have played a little since)
    assert hit["start"] - 0.05 <= current <= hit["end"], (current, hit)
    assert hit["video"] in browser.find_element(By.ID, "now").text

    shot = tmp_path / "serve.png"
    browser.save_screenshot(str(shot))
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    if os.environ.get("PRVR_SCREENSHOT"):
        Path(os.environ["PRVR_SCREENSHOT"]).write_bytes(shot.read_bytes())

    # the API docs render from the server's own copy of Swagger UI, one block per endpoint
    browser.get(url + "/docs")
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, ".opblock")) == 3)
    paths = {e.text for e in browser.find_elements(By.CSS_SELECTOR, ".opblock-summary-path")}
    assert paths == {"/api/info", "/api/search", "/api/videos/{video}"}
