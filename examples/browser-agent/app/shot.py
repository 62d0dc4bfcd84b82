"""Open a page, click its first button when it has one, save a screenshot: python3 shot.py URL [OUT.png]."""

import sys

from playwright.sync_api import sync_playwright

url = sys.argv[1]
out = sys.argv[2] if len(sys.argv) > 2 else "/workspace/shot.png"
with sync_playwright() as p:
    browser = p.chromium.launch(executable_path="/usr/bin/chromium")
    page = browser.new_page(viewport={"width": 640, "height": 360})
    page.goto(url)
    if page.locator("button").count():
        page.locator("button").first.click()
        page.wait_for_timeout(100)
    page.screenshot(path=out)
    result = page.locator("#result")
    print(page.title(), "|", result.inner_text() if result.count() else "")
    browser.close()
