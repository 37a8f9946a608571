"""End to end in headless Chromium (Selenium): a labeler ranks two tasks on the real page; the export
holds exactly those rankings. Skipped, with the reason, where Chromium, chromedriver or selenium is
missing (`.ci/run` installs them: apt `chromium chromium-driver`, pip extra `test`)."""

from __future__ import annotations

import json
import os
import shutil
import threading

import pytest

from instructrl.label.app import make_server
from instructrl.label.db import LabelDB

pytestmark = pytest.mark.browser


def _find(*cands):
    for c in cands:
        if c and os.path.isfile(c) and os.access(c, os.X_OK):
            return c
    return None


CHROMIUM = _find("/usr/bin/chromium", shutil.which("chromium"), shutil.which("chromium-browser"),
                 shutil.which("google-chrome"))
DRIVER = _find("/usr/bin/chromedriver", shutil.which("chromedriver"))
XSS = "<img src=x onerror=\"document.title='pwned'\"><script>document.title='pwned'</script>"


@pytest.fixture
def driver(tmp_path):
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install -e '.[test]')")
    if CHROMIUM is None:
        pytest.skip("headless Chromium not found (apt-get install chromium)")
    if DRIVER is None:
        pytest.skip("chromedriver not found (apt-get install chromium-driver)")
    from selenium.webdriver.chrome.service import Service

    os.environ.setdefault("SE_OFFLINE", "true")  # never let Selenium Manager reach the network
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
                "--no-first-run", "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--window-size=1200,1600", f"--user-data-dir={tmp_path / 'profile'}"):
        opts.add_argument(arg)
    d = webdriver.Chrome(options=opts, service=Service(executable_path=DRIVER))
    d.set_page_load_timeout(60)
    yield d
    d.quit()


@pytest.fixture
def server(tmp_path):
    tasks = [
        {"prompt": "Q: Reverse the word 'cat'.\nA:", "responses": [" tac", " cat", XSS]},
        {"prompt": "Q: Add 2 and 3.\nA:", "responses": [" 5", " 6", " five", " I don't know"]},
        {"prompt": "Q: Spare task?\nA:", "responses": [" a", " b"]},
    ]
    (tmp_path / "tasks.jsonl").write_text("".join(json.dumps(t) + "\n" for t in tasks))
    db = LabelDB(tmp_path / "label.db")
    db.add_tasks_file(tmp_path / "tasks.jsonl")
    token = db.add_labeler("alice")
    srv = make_server(db, "127.0.0.1", 0)
    th = threading.Thread(target=srv.serve_forever, daemon=True)
    th.start()
    yield db, f"http://127.0.0.1:{srv.port}/l/{token}", tasks
    srv.shutdown()
    th.join(timeout=10)


def test_rank_two_tasks_in_headless_chromium(driver, server, tmp_path):
    from selenium.common.exceptions import NoAlertPresentException, StaleElementReferenceException
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    db, link, tasks = server
    wait = WebDriverWait(driver, 30, ignored_exceptions=(StaleElementReferenceException,))  # page reloads

    def task_id():
        return int(driver.find_element(By.ID, "task-id").get_attribute("data-task"))

    def card(i):
        return driver.find_element(By.CSS_SELECTOR, f'#cards > .card[data-index="{i}"]')

    def order():
        return [int(c.get_attribute("data-index")) for c in driver.find_elements(By.CSS_SELECTOR, "#cards > .card")]

    driver.get(link)  # a GET assigns nothing: the first task comes with a click (a POST)
    wait.until(lambda d: d.find_elements(By.ID, "next-btn"))
    driver.find_element(By.ID, "next-btn").click()
    wait.until(lambda d: d.find_elements(By.ID, "cards"))
    assert task_id() == 1
    # The response holding HTML / script is shown as text, and nothing of it ran.
    o = order()
    assert sorted(o) == [0, 1, 2]
    assert card(2).find_element(By.CSS_SELECTOR, ".text").text == XSS
    assert driver.title != "pwned" and not driver.find_elements(By.CSS_SELECTOR, "#cards img")
    with pytest.raises(NoAlertPresentException):
        driver.switch_to.alert.text

    # Task 1, by keyboard: focus the bottom card, move it to the top; tie the (new) last card with
    # the one above it (T); flag the XSS response as harmful; Ctrl+Enter submits.
    ActionChains(driver).click(card(o[2]).find_element(By.CSS_SELECTOR, ".letter")).perform()
    ActionChains(driver).send_keys(Keys.ARROW_UP).send_keys(Keys.ARROW_UP).perform()
    assert order() == [o[2], o[0], o[1]]
    ActionChains(driver).click(card(o[1]).find_element(By.CSS_SELECTOR, ".letter")).send_keys("t").perform()
    assert card(o[1]).find_element(By.CSS_SELECTOR, ".tie").is_selected()
    assert card(o[1]).find_element(By.CSS_SELECTOR, ".place").text == "#2 (tie)"
    card(2).find_element(By.CSS_SELECTOR, 'input.flag[value="harmful"]').click()
    expected1 = [o[2], [o[0], o[1]]]
    assert json.loads(driver.find_element(By.ID, "ranking-input").get_attribute("value")) == expected1
    ActionChains(driver).key_down(Keys.CONTROL).send_keys(Keys.ENTER).key_up(Keys.CONTROL).perform()
    wait.until(lambda d: d.find_elements(By.ID, "task-id") and task_id() == 2)

    # Task 2, with the mouse: the move buttons and a tie checkbox, then the submit button.
    p = order()
    assert sorted(p) == [0, 1, 2, 3] and "1 ranked" in driver.find_element(By.ID, "progress").text
    card(p[0]).find_element(By.CSS_SELECTOR, "button.down").click()
    card(p[0]).find_element(By.CSS_SELECTOR, "button.down").click()
    card(p[3]).find_element(By.CSS_SELECTOR, "button.up").click()
    assert order() == [p[1], p[2], p[3], p[0]]
    card(p[2]).find_element(By.CSS_SELECTOR, ".tie").click()  # tie p[2] with p[1] above it
    expected2 = [[p[1], p[2]], p[3], p[0]]
    driver.find_element(By.ID, "submit-btn").click()
    wait.until(lambda d: d.find_elements(By.ID, "task-id") and task_id() == 3)

    out = tmp_path / "rankings.jsonl"
    assert db.export(out) == 2
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert [(x["task"], x["labeler"], x["ranking"]) for x in lines] == [(1, "alice", expected1), (2, "alice", expected2)]
    assert lines[0]["flags"] == [[], [], ["harmful"]] and lines[1]["flags"] == [[], [], [], []]
    assert lines[0]["responses"] == tasks[0]["responses"] and lines[1]["prompt"] == tasks[1]["prompt"]
    from instructrl.data.readers import read_rankings

    assert [r.labeler for r in read_rankings(out)] == ["alice", "alice"]
    assert driver.title != "pwned"
