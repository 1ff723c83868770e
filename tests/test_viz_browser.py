"""The Softmax Visualizer in a real browser: Debian's Chromium, headless,
driven by Selenium through Debian's chromedriver (nothing downloads a
browser or a driver; .ci/install-browser.sh installs both).

Skipped, with the reason, only where chromium or chromedriver is missing.
FASTSOFTMAX_VIZ_SCREENSHOT=path.png also saves a full-page screenshot there
(docs/visualizer.png is made so).
"""

from __future__ import annotations

import os
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest

import fastsoftmax as fs
from fastsoftmax._viz import compute
from fastsoftmax._viz.server import make_server


def _find(env: str, *names: str) -> str | None:
    if os.environ.get(env):
        return os.environ[env] if Path(os.environ[env]).is_file() else None
    for name in names:
        path = shutil.which(name)
        if path:
            return path
    return None


CHROMIUM = _find("FASTSOFTMAX_CHROMIUM", "chromium", "chromium-browser")
CHROMEDRIVER = _find("FASTSOFTMAX_CHROMEDRIVER", "chromedriver")

pytestmark = pytest.mark.skipif(
    CHROMIUM is None or CHROMEDRIVER is None,
    reason="needs Debian's chromium and chromium-driver "
    f"(found chromium={CHROMIUM}, chromedriver={CHROMEDRIVER}): "
    "sudo apt-get install chromium chromium-driver, or bash .ci/install-browser.sh",
)

WAIT = 15  # seconds for any one thing to appear


@pytest.fixture(scope="module")
def url():
    server = make_server(0)
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    yield server.url
    server.shutdown()
    server.server_close()
    thread.join(5)


@pytest.fixture(scope="module")
def driver(tmp_path_factory):
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.fail("selenium is not installed: pip install '.[test]' (the test extra has it)")
    os.environ.setdefault("SE_OFFLINE", "true")  # Selenium Manager: never download
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in (
        "--headless=new",
        "--no-sandbox",  # CI runs as root
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1280,1000",
        "--hide-scrollbars",
        "--no-first-run",
        "--disable-extensions",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}",
    ):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    browser = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    browser.set_page_load_timeout(30)
    yield browser
    browser.quit()


# ----------------------------------------------------------------- helpers


def wait_until(driver, script, message):
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, WAIT, poll_frequency=0.05).until(
        lambda d: d.execute_script(script), message
    )


def settled(driver):
    """The page's requests are done and it shows an answer or an error."""
    wait_until(
        driver,
        "const r = document.getElementById('result');"
        "return document.body.dataset.pending === '0' && (!!r.dataset.n"
        " || !document.getElementById('error').hidden)",
        "the page did not settle",
    )


def shown(driver):
    """What the page shows: logits, T, backend and probabilities (full precision)."""
    return driver.execute_script(
        """
        const r = document.getElementById('result');
        const values = [...document.querySelectorAll('.prob-value')];
        return {
          logits: JSON.parse(r.dataset.logits),
          temperature: Number(r.dataset.temperature),
          requested: Number(r.dataset.requestedTemperature),
          backend: r.dataset.backend,
          probabilities: values.map((e) => Number(e.dataset.value)),
          texts: values.map((e) => e.textContent),
        };
        """
    )


def js_fmt(p):
    """viz.js's fmt(): 3 decimals, or e-notation below 0.001 as JavaScript writes it."""
    if p == 0:
        return "0"
    if 1e-3 <= abs(p) < 1e5:
        return f"{p:.3f}"
    mantissa, exponent = f"{p:.2e}".split("e")
    return f"{mantissa}e{int(exponent):+d}"


def check_matches_package(state):
    want = fs.softmax(
        np.array(state["logits"]), temperature=state["temperature"], backend=state["backend"]
    )
    assert state["probabilities"] == want.tolist()
    assert state["texts"] == [js_fmt(p) for p in want[:50]]


def type_logits(driver, text):
    """Type into the logits box and press Enter (a long text is pasted)."""
    from selenium.webdriver.common.keys import Keys

    box = driver.find_element("id", "logits-input")
    box.send_keys(Keys.CONTROL, "a")
    box.send_keys(Keys.DELETE)
    if len(text) > 100:
        driver.execute_script("arguments[0].value = arguments[1]", box, text)
        box.send_keys(Keys.END, Keys.ENTER)
    else:
        box.send_keys(text, Keys.ENTER)
    settled(driver)


def error_text(driver):
    box = driver.find_element("id", "error")
    return box.text if box.is_displayed() else ""


def severe_logs(driver):
    return [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]


# ----------------------------------------------------------------- tests


def test_page_shows_the_example_computed_by_the_package(driver, url):
    driver.get(url)
    settled(driver)
    state = shown(driver)
    assert state["logits"] == [2.0, 1.0, 0.1] and state["temperature"] == 1.0
    assert state["backend"] == fs.backends()[0]
    check_matches_package(state)
    assert state["texts"] == ["0.659", "0.242", "0.099"]
    assert driver.find_element("id", "prob-sum").text == "1.000"
    argmax = driver.find_element("css selector", "#bars-body tr.argmax")
    assert argmax.text.startswith("0") and "★" in argmax.text
    assert "answered by backend " + fs.backends()[0] in driver.find_element("id", "answered").text
    assert len(driver.find_elements("css selector", "#temperature-chart polyline")) == 3
    assert driver.find_element("id", "entropy").text.startswith("H = 0.847 nats")
    # The numbers quoted in the explanations are computed too.
    wait_until(
        driver,
        "return [...document.querySelectorAll('.computed')].every(s => s.textContent)",
        "explanations not filled",
    )
    quoted = {
        (e.get_attribute("data-logits"), e.get_attribute("data-temperature")): e.text
        for e in driver.find_elements("css selector", ".computed[data-logits]")
    }
    assert quoted[("10,9,9", None)] == "[0.576, 0.212, 0.212]"
    assert quoted[("2,1,0.1", "0.5")] == "[0.864, 0.117, 0.019]"
    assert quoted[("2,1,0.1", "2")] == "[0.502, 0.304, 0.194]"
    assert severe_logs(driver) == []  # no script error, nothing failed to load


def test_temperature_slider_reshapes_the_bars(driver, url):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    driver.get(url)
    settled(driver)
    before = shown(driver)
    slider = driver.find_element("id", "temperature")
    seen = [before["probabilities"]]
    # Drag it left (sharper), then to either end with the keyboard.
    ActionChains(driver).drag_and_drop_by_offset(slider, -60, 0).perform()
    settled(driver)
    for keys in ((), (Keys.END,), (Keys.HOME,), (Keys.PAGE_UP, Keys.PAGE_UP)):
        if keys:
            slider.send_keys(*keys)
            settled(driver)
        state = shown(driver)
        assert state["temperature"] == state["requested"]  # the answer for where it stopped
        check_matches_package(state)
        label = driver.find_element("id", "temperature-value").text
        assert label == "T = {:g}".format(float("{:.3g}".format(state["temperature"])))
        seen.append(state["probabilities"])
    assert len({tuple(p) for p in seen}) == len(seen)  # every move changed them
    slider.send_keys(Keys.END)
    settled(driver)
    hot = shown(driver)
    assert hot["temperature"] == 10.0 and max(hot["probabilities"]) < 0.4  # nearly uniform
    slider.send_keys(Keys.HOME)
    settled(driver)
    cold = shown(driver)
    assert cold["temperature"] == 0.05 and cold["probabilities"][0] > 0.99  # nearly argmax
    # The quick buttons set the explainer's temperatures.
    driver.find_element("css selector", "button[data-t='0.5']").click()
    settled(driver)
    assert shown(driver)["texts"] == ["0.864", "0.117", "0.019"]
    now = driver.find_element("css selector", "#temperature-chart .now-label").text
    assert now == "T = 0.5"


def test_presets(driver, url):
    driver.get(url)
    settled(driver)
    presets = driver.find_elements("css selector", "#presets button")
    assert len(presets) == len(compute.PRESETS)
    for i, preset in enumerate(compute.PRESETS):
        driver.find_element("id", f"preset-{i}").click()
        settled(driver)
        state = shown(driver)
        assert state["logits"] == preset["logits"]
        check_matches_package(state)
        assert len(driver.find_elements("css selector", "#entries .chip")) == len(preset["logits"])
        verdict = driver.find_element("id", "stability-verdict")
        naive = [e.text for e in driver.find_elements("css selector", "#stability-body .naive-p")]
        if max(preset["logits"]) > 709:
            assert "bad" in verdict.get_attribute("class") and "overflows" in verdict.text
            assert naive == ["NaN"] * len(preset["logits"])
        else:
            assert "good" in verdict.get_attribute("class") and "NaN" not in naive
    driver.find_element("id", "preset-1").click()
    settled(driver)
    assert shown(driver)["texts"] == ["0.576", "0.212", "0.212"]


def test_entries_backends_and_cross_entropy(driver, url):
    from selenium.webdriver.support.ui import Select

    driver.get(url)
    settled(driver)
    driver.find_element("id", "add-logit").click()
    settled(driver)
    assert shown(driver)["logits"] == [2.0, 1.0, 0.1, 0.0]
    driver.find_elements("css selector", "#entries .remove")[1].click()
    settled(driver)
    assert shown(driver)["logits"] == [2.0, 0.1, 0.0]
    check_matches_package(shown(driver))

    for name in fs.backends():
        Select(driver.find_element("id", "backend")).select_by_value(name)
        settled(driver)
        state = shown(driver)
        assert state["backend"] == name
        check_matches_package(state)
        assert f"answered by backend {name}" in driver.find_element("id", "answered").text

    type_logits(driver, "2, 1, 0.1")
    Select(driver.find_element("id", "target")).select_by_value("2")
    settled(driver)
    x = np.array([2.0, 1.0, 0.1])
    correct = float(driver.find_element("id", "ce-correct").get_attribute("data-value"))
    twice = float(driver.find_element("id", "ce-twice").get_attribute("data-value"))
    assert correct == pytest.approx(float(fs.logsumexp(x)) - 0.1, rel=1e-12)
    p = fs.softmax(x)
    assert twice == pytest.approx(float(fs.logsumexp(p)) - p[2], rel=1e-12)
    warning = driver.find_element("id", "ce-warning").text.lower()
    assert "softmax" in warning and "applied" in warning


def test_bad_input_shows_a_message_and_recovers(driver, url, tmp_path):
    driver.get(url)
    settled(driver)
    for text, words in (
        ("1, two, 3", "not a number"),
        ("1, nan", "finite"),
        ("", "no logits"),
        ("1e999", "finite"),
    ):
        type_logits(driver, text)
        assert words in error_text(driver), text
        assert "not computed" in driver.find_element("id", "answered").text
    # Thousands of logits: more than the API takes.
    driver.execute_script(
        "const box = document.getElementById('logits-input');"
        "box.value = Array(arguments[0]).fill('1').join(', ');"
        "box.dispatchEvent(new Event('input'));",
        compute.MAX_LOGITS + 1,
    )
    wait_until(
        driver,
        "return !document.getElementById('error').hidden && document.body.dataset.pending === '0'",
        "no message for too many logits",
    )
    assert "too many logits" in error_text(driver)
    # Many logits within the limit: computed, bars drawn for the first ones.
    type_logits(driver, " ".join(str(i % 7) for i in range(500)))
    assert error_text(driver) == ""
    state = shown(driver)
    assert len(state["logits"]) == 500 and len(state["probabilities"]) == 50
    assert "first 50 of 500" in driver.find_element("id", "bars-note").text
    assert len(driver.find_elements("css selector", "#stability-body .naive-p")) == 20
    # A good list again: the message goes away.
    type_logits(driver, "[10, 9, 9]")
    assert error_text(driver) == ""
    assert shown(driver)["texts"] == ["0.576", "0.212", "0.212"]

    path = tmp_path / "visualizer.png"
    assert driver.save_screenshot(str(path))
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 10_000


def test_unknown_path_page(driver, url):
    driver.get(url + "no/such/page")
    assert "Softmax Visualizer is at" in driver.find_element("tag name", "body").text


def test_full_page_screenshot(driver, url, tmp_path):
    """The whole page, as docs/visualizer.png shows it (also written to
    $FASTSOFTMAX_VIZ_SCREENSHOT when set)."""
    driver.get(url)
    settled(driver)
    wait_until(
        driver,
        "return [...document.querySelectorAll('.computed')].every(s => s.textContent)",
        "explanations not filled",
    )
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(1280, height + 120)
    settled(driver)
    path = tmp_path / "visualizer-full.png"
    try:
        assert driver.save_screenshot(str(path))
    finally:
        driver.set_window_size(1280, 1000)
    assert path.stat().st_size > 50_000
    target = os.environ.get("FASTSOFTMAX_VIZ_SCREENSHOT")
    if target:
        shutil.copyfile(path, target)
