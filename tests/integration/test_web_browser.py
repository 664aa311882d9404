"""The web pages in a real browser: headless Chromium (Debian's ``chromium`` and
``chromium-driver``, which tests/setup-system.sh installs) driven by selenium, against a real
``watcher run`` that polled real feeds on loopback, items with scripts, ``onerror=`` and
``javascript:`` links among them.

One browser and one daemon for the module. Screenshots at 375 and 1,440 px wide go to
``$WATCHER_SCREENSHOTS`` (default: a temp folder, named in the output of ``pytest -s``).
In CI (``CI`` set) a missing browser fails these tests; elsewhere it skips them.
"""

from __future__ import annotations

import json
import os
import signal
import tempfile
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.integration.process import Output, start, wait_for
from tests.servers import FeedServer, Receiver, Route, free_port
from watcher.demo import serve_on_loopback as serve

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"

PAGES = [
    ("/", "Overview"),
    ("/feeds", "Feeds"),
    ("/feeds/world", "world"),
    ("/feeds/broken", "broken"),
    ("/matches?since=7d", "Matches"),
    ("/deliveries", "Deliveries"),
    ("/test?q=Istanbul+OR+Peskov&since=7d", "Rule tester"),
    ("/search?q=Istanbul", "Search"),
]


def hostile_feed(tracker: str) -> bytes:
    """Items whose text tries every way into a page: a script element, an escaped one that
    decodes to one, ``onerror=`` and ``onmouseover=`` handlers, ``javascript:`` links, and an
    image from another origin (which would be a request leaving the page's)."""
    return f"""<?xml version="1.0" encoding="utf-8"?>
<rss version="2.0"><channel><title>World</title><link>http://example.org/</link>
<item><guid>calm</guid><title>Istanbul talks resume with Peskov present</title>
<link>https://example.org/talks</link>
<description>Delegations met in Istanbul on Monday; Peskov spoke of progress.</description></item>
<item><guid>script</guid>
<title>&lt;script&gt;document.title="pwned";window.pwned=1&lt;/script&gt;Istanbul summit</title>
<link>javascript:window.pwned=2</link>
<description>&lt;img src=x onerror="window.pwned=3"&gt; Peskov &lt;a href="javascript:window.pwned=4"&gt;click&lt;/a&gt;</description></item>
<item><guid>escaped</guid>
<title>&amp;lt;script&amp;gt;window.pwned=5&amp;lt;/script&amp;gt; Istanbul &amp;lt;img src=x onerror=window.pwned=6&amp;gt;</title>
<link>https://example.org/escaped</link>
<description><![CDATA[<p>Text <img src="{tracker}"> and <script>window.pwned=7</script> Istanbul <b onmouseover="window.pwned=8">bold</b></p>]]></description></item>
<item><guid>other</guid><title>Weather in Ankara</title><link>https://example.org/weather</link></item>
</channel></rss>""".encode()


def browser_or_skip() -> None:
    missing = [path for path in (CHROMIUM, CHROMEDRIVER) if not Path(path).exists()]
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("selenium (pip install -e '.[test]')")
    if not missing:
        return
    reason = f"no browser to test the pages: {', '.join(missing)} missing (apt-get install chromium chromium-driver)"
    if os.environ.get("CI"):
        pytest.fail(f"{reason}: CI must run the browser tests")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def servers() -> Iterator[tuple[FeedServer, Receiver]]:
    feeds, receiver = FeedServer(), Receiver()
    receiver.planned_by_path["/down"] = [404] * 100  # a notifier that refuses: a dead delivery
    with serve(feeds.handler()) as feed_base, serve(receiver.handler()) as receiver_base:
        feeds.base, receiver.base = feed_base, receiver_base
        feeds.routes["/world.xml"] = Route(hostile_feed(feeds.url("/tracker.png")))
        feeds.routes["/broken.xml"] = Route(b"<h1>oops</h1>", status=500)
        yield feeds, receiver


@pytest.fixture(scope="module")
def site(servers, tmp_path_factory) -> Iterator[str]:
    """A ``watcher run`` whose first poll alerted (``backfill``); the pages' base URL."""
    browser_or_skip()
    feeds, receiver = servers
    folder = tmp_path_factory.mktemp("web")
    listen = f"127.0.0.1:{free_port()}"
    config = folder / "watch.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "settings": {"database": str(folder / "w.db"), "listen": listen, "interval": "2s"},
                "feeds": [
                    {"url": feeds.url("/world.xml"), "name": "world", "backfill": True},
                    {"url": feeds.url("/broken.xml"), "name": "broken"},
                ],
                "rules": [
                    {"name": "talks", "query": "Istanbul", "notify": ["hook", "down"]},
                    {"name": "peskov", "query": "Peskov", "notify": ["hook"]},
                ],
                "notify": {
                    "hook": {"type": "webhook", "url": receiver.url("/hook")},
                    "down": {"type": "webhook", "url": receiver.url("/down")},
                },
            }
        )
    )
    daemon = start(config)
    output = Output(daemon)
    base = f"http://{listen}"
    try:
        wait_for(lambda: len(api(f"{base}/api/deliveries?status=dead")) >= 1, timeout=20)
        wait_for(lambda: any(f["status"] == "failing" for f in api(f"{base}/api/feeds")))
        yield base
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(timeout=10)
        output.close()


def api(url: str) -> Any:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return json.load(response)
    except OSError:
        return []


@pytest.fixture(scope="module")
def browser(site) -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(argument)
    options.add_argument("--window-size=1440,900")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def shots() -> Path:
    folder = os.environ.get("WATCHER_SCREENSHOTS") or tempfile.mkdtemp(prefix="watcher-shots-")
    path = Path(folder)
    path.mkdir(parents=True, exist_ok=True)
    print(f"\nscreenshots of the pages: {path}")
    return path


def visit(browser: Any, url: str) -> None:
    browser.get(url)
    assert browser.execute_script("return document.readyState") == "complete"


def errors_in_console(browser: Any) -> list[dict[str, Any]]:
    return [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]


def assert_no_feed_script_ran(browser: Any) -> None:
    assert browser.execute_script("return typeof window.pwned") == "undefined"
    assert "pwned" not in browser.title


def requests_made(browser: Any) -> list[str]:
    return browser.execute_script(
        "return performance.getEntriesByType('resource').map(e => e.name)"
        ".concat(performance.getEntriesByType('navigation').map(e => e.name))"
    )


@pytest.mark.parametrize(("path", "heading"), PAGES)
def test_every_page_renders_runs_no_feed_script_and_stays_on_its_origin(
    browser, site, servers, path, heading
):
    from selenium.webdriver.common.by import By

    visit(browser, site + path)
    assert heading in browser.find_element(By.TAG_NAME, "h1").text
    assert_no_feed_script_ran(browser)
    for element in browser.find_elements(By.CSS_SELECTOR, "a[href]"):
        assert element.get_attribute("href").startswith(("http://", "https://")), element
    made = requests_made(browser)
    assert made and all(url.startswith(site + "/") for url in made), made
    assert errors_in_console(browser) == []
    feeds, _ = servers
    assert not [r for r in feeds.requests if r.path == "/tracker.png"]


def test_the_tester_runs_a_typed_query_and_marks_its_words(browser, site):
    from selenium.webdriver.common.by import By

    visit(browser, site + "/test")
    box = browser.find_element(By.ID, "q")
    assert browser.find_element(By.CSS_SELECTOR, "label[for=q]").text == "Query"
    box.send_keys("Peskov")
    browser.find_element(By.CSS_SELECTOR, "form.query button[type=submit]").click()
    wait_for(lambda: "q=Peskov" in browser.current_url)
    results = browser.find_elements(By.CSS_SELECTOR, ".results > li")
    assert len(results) == 2
    marks = {mark.text for mark in browser.find_elements(By.CSS_SELECTOR, ".results mark")}
    assert marks == {"Peskov"}
    assert browser.find_element(By.ID, "q").get_attribute("value") == "Peskov"
    assert_no_feed_script_ran(browser)
    assert errors_in_console(browser) == []


def test_a_bad_query_shows_its_column(browser, site):
    from selenium.webdriver.common.by import By

    visit(browser, site + "/test")
    browser.find_element(By.ID, "q").send_keys('"Istanbul talks" (Peskov')
    browser.find_element(By.ID, "q").submit()
    wait_for(lambda: "q=" in browser.current_url)
    problem = browser.find_element(By.CSS_SELECTOR, ".problem").text
    assert "column 18: unbalanced parenthesis" in problem
    assert errors_in_console(browser) == []


def test_the_escaped_feed_text_reads_as_text(browser, site):
    from selenium.webdriver.common.by import By

    visit(browser, site + "/search?q=Istanbul")
    titles = [title.text for title in browser.find_elements(By.CSS_SELECTOR, ".item-title")]
    assert "<script>window.pwned=5</script> Istanbul <img src=x onerror=window.pwned=6>" in titles
    assert "Istanbul summit" in titles  # a script element is dropped, not shown
    assert browser.find_elements(By.CSS_SELECTOR, "main script, main img") == []


@pytest.mark.parametrize("width", [375, 1440])
def test_screenshots_at_phone_and_desktop_widths(browser, site, shots, width):
    """Saved for a person to look at; checked here only for what a machine can tell: no
    page is wider than the window (nothing to scroll sideways but the tables' own boxes)."""
    try:
        for path, _ in [*PAGES, ("/test?q=%22Istanbul+talks%22+(Peskov", "")]:
            browser.set_window_size(width, 900)
            visit(browser, site + path)
            height = browser.execute_script("return document.documentElement.scrollHeight")
            browser.set_window_size(width, min(max(height, 600), 4000))
            name = path.strip("/").split("?")[0].replace("/", "-") or "overview"
            if "q=" in path:
                name += "-bad" if "(" in path else ""
            browser.save_screenshot(str(shots / f"{name}-{width}.png"))
            overflow = browser.execute_script(
                "return document.documentElement.scrollWidth - window.innerWidth"
            )
            assert overflow <= 0, (path, width, overflow)
    finally:
        browser.set_window_size(1440, 900)
    assert errors_in_console(browser) == []
