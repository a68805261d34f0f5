"""The UI in a real browser (Chromium): live colours, timeline, time travel, approving,
the XSS corpus and the token."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.e2e import browser as browsing
from tests.e2e import ui_support
from tests.e2e.browser import node_class
from tests.e2e.test_cli_runs import as_json, cli, write
from tests.e2e.ui_support import WAITING_FLOW, Processes
from tests.support import eventually

procs_fixture = ui_support.procs_fixture
browser_fixture = browsing.browser_fixture
pytestmark = pytest.mark.browser

HELD_FLOW = """
name: held
steps:
  - id: first
    run: ["python3", "-c", "pass"]
  - id: hold
    after: [first]
    env: {{GO: "{go}"}}
    run: ["python3", "-c", "import os, time;
          [time.sleep(0.05) for _ in iter(lambda: os.path.exists(os.environ['GO']), True)]"]
  - id: last
    after: [hold]
    run: ["python3", "-c", "pass"]
"""


def test_a_live_run_s_steps_change_colour_as_another_process_drives_it(
    tmp_path: Path, procs: Processes, browser: Any
) -> None:
    data, go = tmp_path / "data", tmp_path / "go"
    procs.start(data, "serve")
    flow = write(tmp_path, "held.yaml", HELD_FLOW.format(go=go))
    run_id = as_json(cli(data, "run", flow, "--detach", "--json"))["run_id"]
    base = procs.ui(data)
    browser.get(f"{base}/runs/{run_id}")
    eventually(lambda: "st-running" in node_class(browser, "hold"), what="hold runs")
    assert "st-pending" in node_class(browser, "last")
    browser.execute_script("window.__samePage = true;")
    go.touch()
    eventually(lambda: "st-succeeded" in node_class(browser, "last"), what="last succeeds")
    assert "st-succeeded" in node_class(browser, "hold")
    assert browser.execute_script("return window.__samePage === true;"), "the page reloaded"
    status = "const s = document.getElementById('run-status'); return s ? s.textContent : '';"
    eventually(lambda: browser.execute_script(status) == "succeeded", what="the run's status")


def test_the_runs_page_shows_a_new_run_and_its_status_change_live(
    tmp_path: Path, procs: Processes, browser: Any
) -> None:
    data = tmp_path / "data"
    flow = write(tmp_path, "flow.yaml", WAITING_FLOW)
    first = as_json(cli(data, "run", flow, "--detach", "--json"))["run_id"]
    base = procs.ui(data)
    browser.get(f"{base}/")
    browser.execute_script("window.__samePage = true;")
    second = as_json(cli(data, "run", flow, "--detach", "--json"))["run_id"]

    def status_of(run_id: str) -> str:
        return str(
            browser.execute_script(
                "const r = document.querySelector('tr[data-run=\"' + arguments[0] + '\"]');"
                "return r ? r.querySelector('.status').textContent : '';",
                run_id,
            )
        )

    eventually(lambda: status_of(second) == "queued", what="the new run appears")
    cli(data, "cancel", first)
    eventually(lambda: status_of(first) == "cancelled", what="the cancel shows")
    assert browser.execute_script("return window.__samePage === true;")


def waiting_run(tmp_path: Path) -> tuple[Path, str]:
    data = tmp_path / "data"
    result = cli(data, "run", write(tmp_path, "flow.yaml", WAITING_FLOW), "--json")
    assert result.returncode == 3, result.stderr
    return data, as_json(result)["run_id"]


def test_the_timeline_shows_a_failed_attempt_its_retry_wait_and_an_approval_wait(
    tmp_path: Path, procs: Processes, browser: Any
) -> None:
    data, run_id = waiting_run(tmp_path)
    base = procs.ui(data)
    browser.get(f"{base}/runs/{run_id}")
    kinds = browser.execute_script(
        "return Array.from(document.querySelectorAll('#timeline .row')).map(r =>"
        " [r.dataset.step, Array.from(r.querySelectorAll('rect.bar')).map(b =>"
        " b.getAttribute('class'))]);"
    )
    rows = dict(kinds)
    assert rows["flaky"] == ["bar k-attempt o-failed", "bar k-retry", "bar k-attempt o-succeeded"]
    assert rows["gate"] == ["bar k-approval open"]
    widths = browser.execute_script(
        "return Array.from(document.querySelectorAll('#timeline rect.bar'))"
        ".map(b => b.getBoundingClientRect().width);"
    )
    assert all(w > 0 for w in widths)


def test_time_travel_to_an_earlier_event_shows_the_earlier_statuses(
    tmp_path: Path, procs: Processes, browser: Any
) -> None:
    data, run_id = waiting_run(tmp_path)
    base = procs.ui(data)
    history = [
        json.loads(line)
        for line in cli(data, "history", run_id, "--json").stdout.split("\n")
        if line
    ]
    retry_at = next(e["seq"] for e in history if e["type"] == "RetryScheduled")
    browser.get(f"{base}/runs/{run_id}")
    assert "st-waiting" in node_class(browser, "gate")
    browser.execute_script(
        "const at = document.getElementById('at'); at.value = arguments[0];"
        "at.dispatchEvent(new Event('change'));",
        retry_at,
    )
    eventually(lambda: f"at={retry_at}" in browser.current_url, what="the slider moved")
    eventually(lambda: browser.find_elements("id", "asof"))
    assert "st-waiting" in node_class(browser, "flaky")
    assert "st-pending" in node_class(browser, "gate")
    assert "st-succeeded" in node_class(browser, "build")
    fields = json.loads(browser.find_element("id", "event-fields").text)
    assert fields["type"] == "RetryScheduled" and fields["seq"] == retry_at
    built = next(e["seq"] for e in history if e["type"] == "StepSucceeded")
    if not browser.find_element("css selector", "#travel details").get_attribute("open"):
        browser.find_element("css selector", "#travel summary").click()
    browser.find_element("css selector", f'#events a[href$="at={built}"]').click()
    eventually(lambda: f"at={built}" in browser.current_url)
    assert "st-succeeded" in node_class(browser, "build")
    assert "st-pending" in node_class(browser, "flaky")


def test_approving_in_the_ui_finishes_a_waiting_run(
    tmp_path: Path, procs: Processes, browser: Any
) -> None:
    data, run_id = waiting_run(tmp_path)
    procs.start(data, "serve")
    base = procs.ui(data)
    browser.get(f"{base}/runs/{run_id}")
    browser.find_element("css selector", '.action[data-action="approve"][data-step="gate"]').click()
    assert "Confirm: approve gate" in browser.find_element("tag name", "h1").text
    browser.find_element("id", "confirm").click()
    assert "approve gate: logged" in browser.find_element("id", "done").text
    assert "CommandIssued" in browser.page_source
    eventually(lambda: as_json(cli(data, "show", run_id, "--json"))["status"] == "succeeded")


PAYLOADS = [
    "<script>window.__xss = 1</script>",
    '<img src=x onerror="window.__xss = 2">',
    "javascript:window.__xss = 3",
    "</textarea><script>window.__xss = 4</script>",
    '</pre><svg onload="window.__xss = 5"></svg>',
    '"><script>window.__xss = 6</script><a href="javascript:window.__xss = 7">x</a>',
]

XSS_FLOW = """
name: xss
description: {payload}
inputs:
  note: ""
steps:
  - id: speak
    description: {payload}
    run: ["python3", "-c", "import json, os, sys; p = json.loads(sys.argv[1]);
          print(*p, sep=chr(10)); out = open(os.environ['WFA_OUTPUTS'], 'w');
          json.dump({{'payloads': p, 'url': p[2], 'html': p[0]}}, out)", {args}]
  - id: fail
    after: [speak]
    retry: {{max_attempts: 1}}
    run: ["python3", "-c", "import sys; sys.stderr.write(sys.argv[1]); sys.exit(3)", {args}]
"""


def test_nothing_from_a_workflow_executes_in_the_browser(
    tmp_path: Path, procs: Processes, browser: Any
) -> None:
    data = tmp_path / "data"
    quoted = json.dumps(json.dumps(PAYLOADS))
    flow = write(
        tmp_path, "xss.yaml", XSS_FLOW.format(payload=json.dumps(PAYLOADS[5]), args=quoted)
    )
    result = cli(data, "run", flow, "-i", f"note={PAYLOADS[3]}", "--json")
    assert result.returncode == 1, result.stderr
    run_id = as_json(result)["run_id"]
    base = procs.ui(data)
    pages = [
        "/",
        f"/runs/{run_id}?step=speak",
        f"/runs/{run_id}?step=fail",
        f"/runs/{run_id}/steps/speak/log?stream=stdout",
        f"/runs/{run_id}/steps/fail/log?stream=stderr",
        f"/runs/{run_id}/confirm?action=skip&step="
        + "%3C%2Ftextarea%3E%3Cscript%3Ewindow.__xss%3D8%3C%2Fscript%3E",
        f"/api/runs/{run_id}",
        "/stats",
    ]
    for page in pages:
        browser.get(base + page)
        browser.execute_script("return document.readyState")
        injected = browser.execute_script(
            "return [window.__xss, document.querySelectorAll("
            "'script:not([src]), img, [onerror], [onload], a[href^=\"javascript:\"]').length];"
        )
        assert injected == [None, 0], page
    browser.get(f"{base}/runs/{run_id}?step=speak")
    outputs = json.loads(browser.find_element("id", "outputs").text)
    assert outputs["payloads"] == PAYLOADS
    assert PAYLOADS[0] in browser.find_element("id", "tail-stdout").text
    assert PAYLOADS[3] in browser.find_element("id", "inputs").text
    browser.get(f"{base}/runs/{run_id}?step=fail")
    assert "</pre><svg onload=" in browser.find_element("css selector", "#panel .errmsg").text
    assert PAYLOADS[5] == browser.find_element("id", "description").text
    assert browser.execute_script("return window.__xss") is None


def test_with_a_token_the_browser_is_refused_until_it_logs_in(
    tmp_path: Path, procs: Processes, browser: Any
) -> None:
    data, run_id = waiting_run(tmp_path)
    base = procs.ui(data, "--token", "browser-token")
    browser.delete_all_cookies()
    browser.get(f"{base}/runs/{run_id}")
    assert "unauthorized" in browser.find_element("tag name", "body").text
    browser.get(f"{base}/runs/{run_id}?token=browser-token")
    eventually(lambda: browser.current_url == f"{base}/runs/{run_id}")
    assert "st-waiting" in node_class(browser, "gate")
    browser.get(f"{base}/")
    assert browser.find_elements("css selector", f'tr[data-run="{run_id}"]')
