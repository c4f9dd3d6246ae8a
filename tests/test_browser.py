"""The report and the comparison page opened in a real browser (headless Chromium, file://).

Each page must load without console errors, decode every image, show its figures, and respond:
moving the capsule explorer's slider changes the frame drawn, hovering a unit of the torus map
shows its images. A screenshot of each page is saved beside the test's output (``tmp_path``).
The tests skip when Chromium is absent, except under ``CI=true`` where they fail instead.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from test_report import assert_valid_png, make_run
from topovae.report import build_report
from topovae.report.browser import BrowserUnavailable, console_errors, start_chromium
from topovae.report.compare_html import build_compare_html

tvae = pytest.importorskip("topovae.models.tvae")

METRICS = {
    "model": "tvae",
    "data": {"source": "mnist", "test_split": "test", "sequence_builder": "single_factor",
             "n_test_sequences": 3, "sequence_length": 5,
             "splits": {"train": {"split": "train", "n_images": 60000},
                        "test": {"split": "test", "n_images": 10000}}},
    "log_likelihood_nats_per_image": -212.34, "n_is_samples": 10, "n_ll_sequences": 3,
    "equivariance_error": 812.5, "equivariance_error_control": 1710.2,
    "equivariance_ratio": 0.475, "equivariance_ratio_untrained": 0.91,
    "roll_prediction_nll": 310.2, "roll_prediction_mse": 0.051,
    "roll_prediction_nll_static": 371.9, "roll_prediction_nll_sequence_context": 280.4,
    "per_transformation": {
        "rotation": {"n_sequences": 1, "equivariance_error": 900.0,
                     "equivariance_error_control": 1700.0, "equivariance_ratio": 0.53},
        "hue": {"n_sequences": 2, "equivariance_error": 700.0,
                "equivariance_error_control": 1720.0, "equivariance_ratio": 0.41}},
    "seed": 0, "seconds": 12.5,
}


@pytest.fixture(scope="module")
def driver() -> Iterator[Any]:
    try:
        browser, profile = start_chromium()
    except BrowserUnavailable as err:
        if os.environ.get("CI") == "true":
            pytest.fail(f"the browser tests must run in CI: {err}")
        pytest.skip(str(err))
    try:
        yield browser
    finally:
        browser.quit()
        shutil.rmtree(profile, ignore_errors=True)


def open_page(driver: Any, path: Path) -> None:
    console_errors(driver)  # drop what earlier pages logged
    driver.get(path.resolve().as_uri())
    driver.execute_async_script(
        "var done = arguments[0];"
        "Promise.all(Array.from(document.images).map(i => i.decode().catch(() => 0)))"
        ".then(() => requestAnimationFrame(() => done(true)));")


def check_page(driver: Any, screenshot: Path) -> None:
    """No console error, every image decoded, every shown image laid out, no raw JSON."""
    assert console_errors(driver) == []
    broken = driver.execute_script(
        "return Array.from(document.images).filter(i => !(i.complete && i.naturalWidth > 0))"
        ".map(i => i.alt);")
    assert broken == []
    hidden = driver.execute_script(
        "return Array.from(document.images).filter(i => !i.closest('[hidden]'))"
        ".filter(i => i.getBoundingClientRect().width < 50).map(i => i.alt);")
    assert hidden == []  # every figure meant to be seen takes real space on the page
    ids = driver.execute_script(
        "return Array.from(document.querySelectorAll('[id]')).map(e => e.id);")
    assert len(ids) == len(set(ids))  # the scripts find their elements by id
    text = driver.execute_script("return document.body.innerText;")
    assert '{"' not in text and '":' not in text and "..." not in text
    save_screenshot(driver, screenshot)


def save_screenshot(driver: Any, path: Path) -> None:
    """Save a screenshot at ``path`` and, with ``TOPOVAE_SCREENSHOTS=DIR``, a copy in DIR."""
    driver.save_screenshot(str(path))
    assert_valid_png(path.read_bytes(), max_kb=4000)
    keep = os.environ.get("TOPOVAE_SCREENSHOTS")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        test = next((part for part in path.parts if part.startswith("test_")), "page")
        shutil.copy(path, Path(keep) / f"{test}-{path.name}")


def canvas(driver: Any, element_id: str) -> str:
    return driver.execute_script(f"return document.getElementById('{element_id}').toDataURL();")


def capsule_run(tmp_path: Path) -> Path:
    tmp_path.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    caps = {"input_shape": [1, 16, 16], "n_caps": 3, "cap_dim": 5, "seq_len": 5,
            "time_window": 3, "capsule_window": 3}
    run = make_run(tmp_path, tvae.TVAE(tvae.TVAEConfig(**caps)), "tvae", caps, metrics=METRICS)
    (run / "train_summary.json").write_text(json.dumps(
        {"train_seconds": 61.0, "steps": 40, "machine": {"processor": "test CPU",
                                                          "cpu_count": 2, "device": "cpu"}}))
    return run


def test_report_capsule_explorer_in_browser(driver: Any, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    run = capsule_run(tmp_path)
    x = torch.rand(3, 5, 1, 16, 16, generator=torch.Generator().manual_seed(1))
    index = build_report(run, batch={"x": x})
    open_page(driver, index)
    check_page(driver, run / "report" / "screenshot.png")

    slider = driver.find_element(By.ID, "cx-k")
    assert slider.get_attribute("type") == "range" and slider.get_attribute("max") == "4"
    before = {name: canvas(driver, name) for name in ("cx-true", "cx-heat-roll", "cx-alone")}
    readout = driver.find_element(By.ID, "cx-readout").text
    assert "Frame 0" in readout
    slider.send_keys(Keys.ARROW_RIGHT)  # the keyboard moves the slider
    assert slider.get_attribute("value") == "1"
    assert driver.find_element(By.ID, "cx-kval").text == "k = 1"
    after = {name: canvas(driver, name) for name in before}
    assert after["cx-true"] != before["cx-true"]  # another true frame
    assert after["cx-heat-roll"] != before["cx-heat-roll"]  # the code rolled
    assert "Frame 1" in driver.find_element(By.ID, "cx-readout").text
    # another sequence: other frames at the same k
    from selenium.webdriver.support.ui import Select

    Select(driver.find_element(By.ID, "cx-seq")).select_by_index(2)
    assert canvas(driver, "cx-true") != after["cx-true"]
    save_screenshot(driver, run / "report" / "screenshot_k1.png")
    assert console_errors(driver) == []

    # the numbers: grouped, with units and controls, per transformation as a table
    text = driver.find_element(By.TAG_NAME, "body").text
    for words in ("equivariance", "prediction", "likelihood", "nats per image",
                  "0.910 (same network untrained)", "predicting no change", "rotation",
                  "Training budget: 40 optimiser steps in 61 s on test CPU"):
        assert words in text, words
    assert driver.find_elements(By.CSS_SELECTOR, "table.per-transformation tr")


def test_report_torus_map_hover_in_browser(driver: Any, tmp_path: Path) -> None:
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    torch.manual_seed(0)
    torus = {"input_shape": [1, 16, 16], "topography": "torus", "n_caps": 4, "cap_dim": 4,
             "seq_len": 1, "time_window": 0, "capsule_window": 3}
    run = make_run(tmp_path, tvae.TVAE(tvae.TVAEConfig(**torus)), "tvae", torus)
    batch = {"x": torch.rand(60, 1, 1, 16, 16, generator=torch.Generator().manual_seed(2)),
             "labels": torch.arange(60) % 3}
    index = build_report(run, batch=batch)
    open_page(driver, index)
    units = driver.find_elements(By.CSS_SELECTOR, ".tx-unit")
    assert len(units) == 16
    title = driver.find_element(By.ID, "tx-title")
    assert "Unit (" not in title.text
    ActionChains(driver).move_to_element(units[5]).perform()
    assert title.text.startswith("Unit (1, 1): prefers class ")
    drawn = driver.execute_script(
        "return Array.from(document.querySelectorAll('canvas.tx-img')).map(c => "
        "c.getContext('2d').getImageData(0, 0, c.width, c.height).data"
        ".reduce((a, b) => a + b, 0));")
    assert len(drawn) == 6 and min(drawn) > 0  # its most activating images are drawn
    bars = driver.find_elements(By.CSS_SELECTOR, "#tx-profile .tx-bar")
    assert len(bars) == 3  # one bar per class
    ActionChains(driver).move_to_element(units[14]).perform()
    assert title.text.startswith("Unit (3, 2)")
    # the keyboard walks the torus: focus a unit, arrow keys move to its neighbours (wrapping)
    from selenium.webdriver.common.keys import Keys

    driver.execute_script("arguments[0].focus();", units[15])
    assert title.text.startswith("Unit (3, 3)")
    ActionChains(driver).send_keys(Keys.ARROW_RIGHT).perform()
    assert title.text.startswith("Unit (3, 0)")
    ActionChains(driver).send_keys(Keys.ARROW_DOWN).perform()
    assert title.text.startswith("Unit (0, 0)")
    check_page(driver, run / "report" / "screenshot.png")


def test_compare_page_in_browser(driver: Any, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    runs = []
    for seed, ratio in enumerate((0.45, 0.5)):
        run = capsule_run(tmp_path / f"s{seed}")
        config = yaml.safe_load((run / "config.yaml").read_text())
        config["preset"] = "tvae-tiny"
        config["train"]["seed"] = seed
        (run / "config.yaml").write_text(yaml.safe_dump(config))
        (run / "metrics.json").write_text(json.dumps({**METRICS, "equivariance_ratio": ratio}))
        x = torch.rand(2, 5, 1, 16, 16, generator=torch.Generator().manual_seed(seed))
        build_report(run, batch={"x": x})
        runs.append(run)
    page = build_compare_html(runs, tmp_path / "compare.html")
    open_page(driver, page)
    check_page(driver, tmp_path / "compare_screenshot.png")
    text = driver.find_element(By.TAG_NAME, "body").text
    assert "0.475 ± 0.035" in text  # mean ± sample std of the two seeds' ratios
    assert len(driver.find_elements(By.CSS_SELECTOR, "img.traversal")) == 2
    # the table fits the window: nothing hidden behind a horizontal scroll
    assert driver.execute_script(
        "var w = document.querySelector('.wide'); return w.scrollWidth <= w.clientWidth;")
