"""Screenshot a report or comparison page in headless Chromium (the README's pictures).

    python scripts/screenshot.py runs/demo/report/index.html docs/images/explorer.png \
        --element cx-explorer --slider 6 --sequence 1

``--element ID`` crops to one element of the page, ``--slider K`` moves the capsule explorer to
roll ``k = K``, ``--sequence I`` picks its test sequence, ``--hover N`` hovers unit N of the torus
map. Needs selenium and Debian's chromium + chromium-driver (see topovae.report.browser).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from topovae.report.browser import BrowserUnavailable, console_errors, start_chromium


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("page", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--element", help="id of the element to crop to")
    parser.add_argument("--slider", type=int, help="capsule explorer: roll k")
    parser.add_argument("--sequence", type=int, help="capsule explorer: sequence index")
    parser.add_argument("--hover", type=int, help="torus map: unit index to hover")
    parser.add_argument("--width", type=int, default=1100)
    args = parser.parse_args(argv)
    if not args.page.is_file():
        print(f"error: {args.page} does not exist", file=sys.stderr)
        return 2
    try:
        driver, _ = start_chromium(width=args.width, height=1400)
    except BrowserUnavailable as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    try:
        from selenium.webdriver.common.action_chains import ActionChains
        from selenium.webdriver.common.by import By

        driver.get(args.page.resolve().as_uri())
        if args.sequence is not None:
            driver.execute_script("var s = document.getElementById('cx-seq'); "
                                  f"s.selectedIndex = {args.sequence}; "
                                  "s.dispatchEvent(new Event('change'));")
        if args.slider is not None:
            driver.execute_script("var s = document.getElementById('cx-k'); "
                                  f"s.value = {args.slider}; "
                                  "s.dispatchEvent(new Event('input'));")
        if args.hover is not None:
            unit = driver.find_elements(By.CSS_SELECTOR, ".tx-unit")[args.hover]
            driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", unit)
            ActionChains(driver).move_to_element(unit).perform()
        errors = console_errors(driver)
        if errors:
            print(f"error: the page logged {errors}", file=sys.stderr)
            return 1
        args.out.parent.mkdir(parents=True, exist_ok=True)
        if args.element:
            element = driver.find_element(By.ID, args.element)
            driver.execute_script("arguments[0].scrollIntoView();", element)
            element.screenshot(str(args.out))
        else:
            driver.save_screenshot(str(args.out))
    finally:
        driver.quit()
    print(f"screenshot: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
