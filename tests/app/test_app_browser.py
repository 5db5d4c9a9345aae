"""The app in a real browser: Debian's headless chromium, driven by Selenium through the system
chromedriver (nothing is downloaded), uploads a real and a generated image of the mini-benchmark and
a broken file, and reads what a person would see.

``HRRKIT_APP_SCREENSHOT=docs/img/app_screenshot.png`` also copies the screenshot there (that is how
the docs picture is made); otherwise it stays in the test's temporary folder.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from hrrkit.eval.predict import detect_files
from hrrkit.models.detector import HRRDetector

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
pytestmark = pytest.mark.skipif(
    not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)),
    reason="chromium and chromium-driver are not installed (apt-get install -y chromium chromium-driver)",
)


@pytest.fixture
def browser(tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
                 f"--user-data-dir={tmp_path / 'chromium-profile'}", "--window-size=1400,1800"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(120)
    try:
        yield driver
    finally:
        driver.quit()


def test_upload_shows_verdicts_evidence_and_the_card(browser, app_server, app_model, bad_file, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    # the mini-benchmark names files by index within a class (real/00000.png, fake/unet-ddim/00000.png):
    # copies named by their truth keep the two apart on the page and in the screenshot
    real, fake, bad = tmp_path / "real-photo.png", tmp_path / "generated.png", bad_file
    shutil.copy(app_model["real"][0], real)
    shutil.copy(app_model["fake"][0], fake)
    browser.get(app_server["url"])
    wait = WebDriverWait(browser, 240, poll_frequency=0.5)
    upload = wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "#hrrkit-upload input[type=file]"))
    card = browser.find_element(By.ID, "hrrkit-card").text
    assert "validation AP" in card and "retrospector" in card and "training data" in card
    assert str(app_model["bench"].manifest) in card

    upload.send_keys("\n".join(str(p) for p in (real, fake, bad)))
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#hrrkit-results .hrrkit-result")) == 3)
    cards = browser.find_elements(By.CSS_SELECTOR, "#hrrkit-results .hrrkit-result")
    assert [c.get_attribute("data-name") for c in cards] == [real.name, fake.name, bad.name]

    # what the page says is what `hrrkit detect` says for the same files
    detector = HRRDetector.from_pretrained(app_model["model"])
    cli = {Path(r["path"]).name: r for r in detect_files(detector, [real, fake]).rows}
    for element in cards[:2]:
        name = element.get_attribute("data-name")
        verdict = element.find_element(By.CSS_SELECTOR, ".hrrkit-verdict").text
        score = element.find_element(By.CSS_SELECTOR, ".hrrkit-score").text
        assert verdict == cli[name]["label"] and score == f"{cli[name]['score']:.4f}"
        assert len(element.find_elements(By.CSS_SELECTOR, ".hrrkit-scales th")) == 1 + len(cli[name]["scale_scores"])
        for css in ("img.hrrkit-evidence", "img.hrrkit-retrospection"):
            image = element.find_element(By.CSS_SELECTOR, css)
            assert image.is_displayed()
            width = browser.execute_script("return arguments[0].complete && arguments[0].naturalWidth", image)
            assert width and width > 100, f"{name}: {css} did not render"
        assert "logit" in element.find_element(By.CSS_SELECTOR, ".hrrkit-evidence-caption").text
    broken = cards[2].text
    assert "Cannot read this file: NotAnImageError" in broken and "Traceback" not in browser.page_source

    shot = tmp_path / "app_screenshot.png"
    height = browser.execute_script("return document.documentElement.scrollHeight")
    browser.set_window_size(1400, min(int(height) + 160, 4000))  # the whole page, the unreadable file's card too
    browser.execute_script("window.scrollTo(0, 0)")
    assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 20_000
    if os.environ.get("HRRKIT_APP_SCREENSHOT"):
        shutil.copy(shot, os.environ["HRRKIT_APP_SCREENSHOT"])

