"""End to end in a real browser: `mlpbp playground` serving headless Chromium (Debian's chromium
and chromium-driver, which .ci/run installs), driven as a user drives it."""

from __future__ import annotations

import csv
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from helpers import PYTHON, subprocess_env

pytest.importorskip("starlette")
webdriver = pytest.importorskip("selenium.webdriver")
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.action_chains import ActionChains  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not Path(CHROMEDRIVER).exists(), reason="needs chromium-driver (.ci/run installs it)"),
]


@pytest.fixture
def server():
    proc = subprocess.Popen(
        [PYTHON, "-m", "mlpbp", "playground", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=subprocess_env(),
    )
    try:
        line = proc.stdout.readline()
        match = re.search(r"http://127\.0\.0\.1:\d+/", line)
        assert match, line + proc.stderr.read() if proc.poll() is not None else line
        yield match.group(0)
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.fixture
def browser(tmp_path):
    options = webdriver.ChromeOptions()
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(arg)
    options.add_argument("--window-size=1400,1200")
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    options.add_experimental_option(
        "prefs", {"download.default_directory": str(downloads), "download.prompt_for_download": False}
    )
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)})
    driver.downloads = downloads
    try:
        yield driver
    finally:
        driver.quit()


def wait(driver, condition, timeout=120):
    return WebDriverWait(driver, timeout, poll_frequency=0.2).until(lambda d: condition(d))


def set_control(driver, element_id: str, value: str) -> None:
    """Set a control and fire its change event, as a user leaving the field does (Selenium's
    clear() would fire one of its own for the empty field)."""
    el = driver.find_element(By.ID, element_id)
    script = "arguments[0].value = arguments[1]; arguments[0].dispatchEvent(new Event('change'))"
    driver.execute_script(script, el, value)


def test_train_click_gradcheck_and_take_the_yaml_to_mlpbp_train(server, browser, tmp_path):
    d = browser
    d.get(server)
    status = d.find_element(By.ID, "status")
    connection = d.find_element(By.ID, "connection")
    wait(d, lambda d: connection.text == "connected" and status.get_attribute("data-train-loss"))
    set_control(d, "points", "300")
    wait(d, lambda d: d.execute_script("return state && state.train.length + state.test.length") == 300)
    wait(d, lambda d: status.get_attribute("data-step") == "0" and status.get_attribute("data-train-loss"))
    start_loss = float(status.get_attribute("data-train-loss"))
    before = d.execute_script("return document.getElementById('output').toDataURL()")

    d.find_element(By.ID, "run").click()
    wait(d, lambda d: int(d.find_element(By.ID, "epoch-loss").get_attribute("data-epoch") or 0) >= 3)
    d.find_element(By.ID, "pause").click()
    wait(d, lambda d: d.find_element(By.ID, "run").is_enabled())
    time.sleep(0.5)  # a frame already on its way lands before we read
    step = int(status.get_attribute("data-step"))
    assert step > 0 and float(status.get_attribute("data-train-loss")) < start_loss
    after = d.execute_script("return document.getElementById('output').toDataURL()")
    assert after != before  # the decision regions moved
    assert "no epoch" not in d.find_element(By.ID, "epoch-loss").text

    # click the first training point: its forward and backward pass
    canvas = d.find_element(By.ID, "output")
    px, py = d.execute_script("return toPixel(state.train[0], document.getElementById('output'))")
    ActionChains(d).move_to_element_with_offset(
        canvas, int(px - canvas.size["width"] / 2), int(py - canvas.size["height"] / 2)
    ).click().perform()
    wait(d, lambda d: d.find_element(By.ID, "example").get_attribute("data-index") is not None)
    table = d.find_element(By.ID, "example").text
    for expected in ("Forward pass", "Backward pass", "z(1)", "a(2)", "∂J/∂W(3)", "∂J/∂b(1)", "(8×2)", "(2×8)"):
        assert expected in table, expected
    assert "agrees with the engine's loss_and_grad" in d.find_element(By.ID, "example-note").text

    d.find_element(By.ID, "gradcheck").click()
    wait(d, lambda d: d.find_element(By.ID, "gradcheck-table").get_attribute("data-ok") is not None)
    assert d.find_element(By.ID, "gradcheck-table").get_attribute("data-ok") == "true"
    assert "W1 (layer 1" in d.find_element(By.ID, "gradcheck-table").text

    # the YAML, trained by `mlpbp train`, reaches the loss the page shows for the last epoch
    shown = d.find_element(By.ID, "epoch-loss").get_attribute("data-epoch-loss")
    d.find_element(By.ID, "download-yaml").click()
    path = d.downloads / "playground.yaml"
    wait(d, lambda d: path.exists() and path.stat().st_size > 0, timeout=30)
    cfg = yaml.safe_load(path.read_text())
    assert cfg["train"]["epochs"] == int(d.find_element(By.ID, "epoch-loss").get_attribute("data-epoch"))
    out = tmp_path / "run"
    done = subprocess.run(
        [PYTHON, "-m", "mlpbp", "train", str(path), "--quiet", "--out", str(out)],
        capture_output=True,
        text=True,
        env=subprocess_env(),
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    with open(out / "history.csv") as f:
        last = list(csv.DictReader(f))[-1]
    assert float(last["train_loss"]) == float(shown)

    # a bad value: one line in the page, and the page keeps working
    set_control(d, "hidden", "1000000")
    wait(d, lambda d: "width 1000000" in d.find_element(By.ID, "error").text)
    d.find_element(By.ID, "step").click()
    wait(d, lambda d: int(status.get_attribute("data-step")) == step + 1)
