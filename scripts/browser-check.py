#!/usr/bin/env python3
"""Drives headless Chromium through a service's /ops and /docs (see scripts/browser-check.sh).

The admin token comes from $BROWSER_CHECK_TOKEN (never on the command line, where `ps` shows it).
Exits 1 with a message naming the failed step.
"""

import argparse
import json
import os
import sys
import time
import urllib.error
import urllib.request

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

WAIT_SECONDS = 30


def fail(message):
    print(f"browser-check: FAILED: {message}", file=sys.stderr)
    sys.exit(1)


def wait_for(what, check, seconds=WAIT_SECONDS):
    """Polls `check` until it returns something truthy; fails naming `what` after `seconds`."""
    deadline = time.monotonic() + seconds
    last_error = None
    while time.monotonic() < deadline:
        try:
            found = check()
            if found:
                return found
        except Exception as err:  # the DOM is re-rendered every second: a stale element is normal
            last_error = err
        time.sleep(0.2)
    fail(f"{what} (waited {seconds} s; last error: {last_error})")


def api(method, url, token=None):
    req = urllib.request.Request(url, method=method)
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=10) as res:
            return res.status, json.loads(res.read() or b"null")
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"null")


def csp_violations(driver):
    try:
        logs = driver.get_log("browser")
    except Exception:
        return []
    return [entry["message"] for entry in logs if "Content Security Policy" in entry.get("message", "")]


def breaker_state(driver, name):
    row = driver.find_element(By.CSS_SELECTOR, f'#breakers tr[data-breaker="{name}"] [data-state]')
    return row.get_attribute("data-state")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--base", required=True, help="the service's base URL")
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    parser.add_argument("--driver", default="/usr/bin/chromedriver")
    parser.add_argument("--out", required=True, help="folder for the screenshots")
    parser.add_argument("--probe", default="/v1/products", help="a public GET route of the service")
    args = parser.parse_args()
    token = os.environ.get("BROWSER_CHECK_TOKEN") or fail("BROWSER_CHECK_TOKEN is not set")
    base = args.base.rstrip("/")
    probe = args.probe

    status, state = api("GET", f"{base}/ops/state")
    if status != 200:
        fail(f"GET /ops/state answered {status}")
    candidates = [b["name"] for b in state["breakers"] if "force-open" in b["actions"]]
    if not candidates:
        fail(f"{state['service']} has no breaker that can be forced open: {state['breakers']}")
    name = candidates[0]

    options = webdriver.ChromeOptions()
    options.binary_location = args.chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                 "--window-size=1400,1000"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=args.driver), options=options)
    try:
        print(f"== /ops: {base}/ops (breaker {name})")
        driver.get(f"{base}/ops")
        wait_for("the page names the service", lambda: driver.find_element(By.ID, "service").text == state["service"])
        wait_for(f"the page shows {name} closed", lambda: breaker_state(driver, name) == "closed")
        wait_for("the page computes rates (second poll)",
                 lambda: "rates over" in driver.find_element(By.ID, "status").text)
        # Some traffic, so that the route table has a row with a rate and percentiles.
        for _ in range(20):
            status, _ = api("GET", f"{base}{probe}")
            if status != 200:
                fail(f"GET {probe} answered {status}")
        # Read in one script: the page re-renders its tables every second.
        rows = """return [...document.querySelectorAll('#routes tbody tr')]
                  .map(tr => [...tr.cells].map(td => td.textContent));"""
        wait_for(f"the page shows GET {probe} traffic", lambda: any(
            cells[0] == f"GET {probe}" and cells[1] not in ("–", "0.00")
            for cells in driver.execute_script(rows)), seconds=10)

        status, body = api("POST", f"{base}/ops/breakers/{name}/force-open")
        if status != 401:
            fail(f"force-open without a token answered {status}, not 401")
        started = time.monotonic()
        status, body = api("POST", f"{base}/ops/breakers/{name}/force-open", token)
        if status != 200 or body.get("state") != "forced_open":
            fail(f"force-open answered {status} {body}")
        wait_for(f"the page shows {name} forced open", lambda: breaker_state(driver, name) == "forced_open",
                 seconds=10)
        print(f"   forced open through the API; the page showed it after {time.monotonic() - started:.1f} s")
        driver.save_screenshot(os.path.join(args.out, "ops.png"))

        # The page's own button, with the token typed into its password field.
        driver.find_element(By.ID, "token").send_keys(token)
        button = wait_for("the reset button", lambda: driver.find_element(
            By.CSS_SELECTOR, f'#breakers tr[data-breaker="{name}"] button[data-action="reset"]'))
        # Held across two polls, as a person reading the row would: the page updates rows in
        # place, so the button found is still the one on screen (a rebuilt row swallowed clicks).
        time.sleep(2.5)
        button.click()
        wait_for(f"the page shows {name} closed after its reset button", lambda: breaker_state(driver, name) == "closed",
                 seconds=10)
        status, state = api("GET", f"{base}/ops/state")
        now = [b["state"] for b in state["breakers"] if b["name"] == name]
        if now != ["closed"]:
            fail(f"after the page's reset, /ops/state says {now}")
        print("   the page's reset button closed it")
        violations = csp_violations(driver)
        if violations:
            fail(f"/ops broke its CSP: {violations}")

        print(f"== /docs: {base}/docs/")
        driver.get(f"{base}/docs/")
        operations = wait_for("Swagger UI renders operations", lambda: driver.find_elements(
            By.CSS_SELECTOR, ".swagger-ui .opblock"))
        print(f"   Swagger UI rendered {len(operations)} operations")
        driver.save_screenshot(os.path.join(args.out, "docs.png"))
        violations = csp_violations(driver)
        if violations:
            fail(f"/docs broke its CSP: {violations}")
    finally:
        driver.quit()
    print("browser-check: ok")


if __name__ == "__main__":
    main()
