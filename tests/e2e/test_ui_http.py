"""`wfa ui` over real sockets: pages, JSON, live streams, actions, and its security rules."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tests.e2e import ui_support
from tests.e2e.test_cli_runs import as_json, cli, write
from tests.e2e.ui_support import WAITING_FLOW, Processes, http

procs_fixture = ui_support.procs_fixture

FORM = {"content-type": "application/x-www-form-urlencoded"}


def waiting_run(tmp_path: Path) -> tuple[Path, str]:
    """A data directory with one run that waits for approval of `gate`."""
    data = tmp_path / "data"
    result = cli(data, "run", write(tmp_path, "flow.yaml", WAITING_FLOW), "--json")
    assert result.returncode == 3, result.stderr
    return data, as_json(result)["run_id"]


def csrf_of(page: str) -> str:
    found = re.search(r'name="csrf" value="([0-9a-f]+)"', page)
    assert found, page
    return found.group(1)


def events_of(base: str, run_id: str) -> list[dict[str, Any]]:
    return json.loads(http(f"{base}/api/runs/{run_id}/events").body)


def test_pages_and_json_answer_and_an_unknown_run_is_404(tmp_path: Path, procs: Processes) -> None:
    data, run_id = waiting_run(tmp_path)
    base = procs.ui(data)
    for path in ("/", f"/runs/{run_id}", "/stats", "/agents", "/alerts", "/static/app.js"):
        assert http(base + path).status == 200, path
    page = http(f"{base}/runs/{run_id}").text
    assert 'data-step="gate"' in page and "approval of gate" in page
    listed = json.loads(http(f"{base}/api/runs").body)
    assert [r["run_id"] for r in listed["runs"]] == [run_id]
    assert listed["counts"]["running"] == 1
    shown = json.loads(http(f"{base}/api/runs/{run_id}").body)
    assert shown == {k: v for k, v in as_json(cli(data, "show", run_id, "--json")).items()
                     if k != "driven"}  # fmt: skip
    first = events_of(base, run_id)[0]["seq"]
    earlier = json.loads(http(f"{base}/api/runs/{run_id}?at={first}").body)
    assert earlier == as_json(cli(data, "replay", run_id, "--at", str(first), "--json"))
    for path in ("/runs/no-such-run", "/api/runs/no-such-run", "/runs/no-such-run/live"):
        assert http(base + path).status == 404, path
    assert http(f"{base}/?status=bogus").status == 400
    assert json.loads(http(f"{base}/api/stats").body)["totals"]["runs_submitted"] == 1
    stats = http(f"{base}/stats").text
    assert stats.count('class="bar p95"') == 2  # build and flaky finished: one bar each
    assert 'id="throughput"' in stats and 'id="error-rate"' in stats
    agents = json.loads(http(f"{base}/api/agents").body)
    used = next(a for a in agents if a["attempts_24h"])
    assert used["circuit"] == "closed" and used["attempts_24h"] == 3 and used["failed_24h"] == 1
    assert json.loads(http(f"{base}/api/alerts").body) == {"open": [], "resolved": []}


def test_every_answer_has_a_strict_csp_nosniff_and_no_cors(
    tmp_path: Path, procs: Processes
) -> None:
    data, run_id = waiting_run(tmp_path)
    base = procs.ui(data)
    for path in ("/", f"/runs/{run_id}", "/api/runs", "/runs/nope", "/static/style.css"):
        answer = http(base + path, headers={"Origin": "http://evil.example"})
        csp = answer.headers["content-security-policy"]
        assert (
            "script-src 'self'" in csp
            and "unsafe-inline" not in csp
            and "default-src 'none'" in csp
        )
        assert answer.headers["x-content-type-options"] == "nosniff"
        assert not [h for h in answer.headers if h.lower().startswith("access-control-")]
    asks = {"Origin": "http://evil.example", "Access-Control-Request-Method": "POST"}
    preflight = http(f"{base}/runs/{run_id}/actions", method="OPTIONS", headers=asks)
    assert preflight.status == 405
    assert "access-control-allow-origin" not in {h.lower() for h in preflight.headers}


def test_no_get_changes_a_run_and_a_post_needs_the_csrf_token(
    tmp_path: Path, procs: Processes
) -> None:
    data, run_id = waiting_run(tmp_path)
    base = procs.ui(data)
    before = events_of(base, run_id)
    confirm = http(f"{base}/runs/{run_id}/confirm?action=approve&step=gate")
    assert confirm.status == 200
    assert http(f"{base}/runs/{run_id}/actions?action=approve&step=gate").status == 405
    body = b"action=approve&step=gate"
    assert (
        http(f"{base}/runs/{run_id}/actions", method="POST", data=body, headers=FORM).status == 403
    )
    forged = body + b"&csrf=" + b"0" * 64
    assert (
        http(f"{base}/runs/{run_id}/actions", method="POST", data=forged, headers=FORM).status
        == 403
    )
    assert events_of(base, run_id) == before
    log = cli(data, "history", run_id, "--json").stdout
    assert "CommandIssued" not in http(f"{base}/api/runs/{run_id}/events").text + log

    not_applicable = f"action=retry&step=build&csrf={csrf_of(confirm.text)}".encode()
    refused = http(
        f"{base}/runs/{run_id}/actions", method="POST", data=not_applicable, headers=FORM
    )
    assert refused.status == 409
    good = f"action=approve&step=gate&csrf={csrf_of(confirm.text)}".encode()
    done = http(f"{base}/runs/{run_id}/actions", method="POST", data=good, headers=FORM)
    assert done.status == 200
    assert "CommandIssued" in done.text and "no engine drives" in done.text


def test_read_only_offers_no_action_and_refuses_every_post(
    tmp_path: Path, procs: Processes
) -> None:
    data, run_id = waiting_run(tmp_path)
    base = procs.ui(data, "--read-only")
    page = http(f"{base}/runs/{run_id}").text
    assert "/confirm?" not in page and "read-only" in page
    confirm = http(f"{base}/runs/{run_id}/confirm?action=approve&step=gate").text
    body = f"action=approve&step=gate&csrf={csrf_of(confirm)}".encode()
    assert (
        http(f"{base}/runs/{run_id}/actions", method="POST", data=body, headers=FORM).status == 403
    )
    assert "CommandIssued" not in json.dumps(events_of(base, run_id))


def test_with_a_token_every_request_needs_it_by_bearer_or_login_cookie(
    tmp_path: Path, procs: Processes
) -> None:
    data, run_id = waiting_run(tmp_path)
    base = procs.ui(data, env={"WFA_UI_TOKEN": "s3cret-token"})
    for path in ("/", f"/runs/{run_id}", "/api/runs", "/static/app.js", "/live"):
        assert http(base + path).status == 401, path
    assert http(base + "/", headers={"Authorization": "Bearer wrong"}).status == 401
    assert http(base + "/", headers={"Authorization": "Bearer s3cret-token"}).status == 200
    login = http(f"{base}/runs/{run_id}?token=s3cret-token&step=gate")
    assert login.status == 303
    assert login.headers["location"] == f"/runs/{run_id}?step=gate"
    cookie = login.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    assert http(f"{base}/?token=nope").status == 401
    jar = cookie.split(";", 1)[0]
    assert http(f"{base}/runs/{run_id}", headers={"Cookie": jar}).status == 200
    assert http(f"{base}/api/runs", headers={"Cookie": "wfa_ui_token=nope"}).status == 401


def test_without_a_token_only_loopback_host_names_are_answered(
    tmp_path: Path, procs: Processes
) -> None:
    data, _ = waiting_run(tmp_path)
    base = procs.ui(data)
    assert http(base + "/", headers={"Host": "rebound.example:80"}).status == 403
    assert http(base + "/", headers={"Host": "localhost"}).status == 200


def test_only_loopback_bind_hosts_go_without_a_token() -> None:
    from engine.ui.security import is_loopback

    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.10") and not is_loopback("::")


def test_logs_are_served_by_run_and_step_id_never_by_a_path(
    tmp_path: Path, procs: Processes
) -> None:
    data, run_id = waiting_run(tmp_path)
    base = procs.ui(data)
    stdout = http(f"{base}/runs/{run_id}/steps/build/log?stream=stdout&attempt=1")
    assert stdout.status == 200 and stdout.text == "built\n"
    assert stdout.headers["content-type"].startswith("text/plain")
    for bad in (
        f"/runs/{run_id}/steps/build/log?stream=../../events",
        f"/runs/{run_id}/steps/build/log?attempt=9",
        f"/runs/{run_id}/steps/..%2F..%2F..%2Fevents/log",
        f"/runs/{run_id}/steps/gate/log",
        "/runs/..%2F..%2Fetc/steps/passwd/log",
    ):
        assert http(base + bad).status == 404, bad


def test_the_live_streams_carry_new_events_as_they_are_committed(
    tmp_path: Path, procs: Processes
) -> None:
    data, run_id = waiting_run(tmp_path)
    base = procs.ui(data)
    runs = _stream(f"{base}/live")
    run = _stream(f"{base}/runs/{run_id}/live")
    cli(data, "cancel", run_id)
    assert '"status": "cancelled"' in _read_until(runs, '"cancelled"')
    assert '"type": "RunCancelled"' in _read_until(run, "RunCancelled")


def _stream(url: str) -> Any:
    host, port = url.split("//")[1].split("/")[0].split(":")
    sock = socket.create_connection((host, int(port)), timeout=15)
    path = "/" + url.split("//")[1].split("/", 1)[1]
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
    reader = sock.makefile("rb")
    _read_until(reader, "event: hello")
    return reader


def _read_until(reader: Any, marker: str, timeout: float = 15.0) -> str:
    deadline, seen = time.monotonic() + timeout, ""
    while marker not in seen:
        if time.monotonic() > deadline:
            raise AssertionError(f"{marker!r} not seen in {seen!r}")
        seen += reader.readline().decode()
    return seen


def test_wfa_serve_ui_serves_the_ui_beside_the_engine(tmp_path: Path, procs: Processes) -> None:
    data = tmp_path / "data"
    server = procs.start(data, "serve", "--ui", "--ui-port", "0")
    base = procs.url_of(server)
    flow = write(tmp_path, "flow.yaml", WAITING_FLOW)
    run_id = as_json(cli(data, "run", flow, "--detach", "--json"))["run_id"]
    deadline = time.monotonic() + 30
    while "approval of gate" not in http(f"{base}/api/runs/{run_id}").text:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    confirm = http(f"{base}/runs/{run_id}/confirm?action=approve&step=gate").text
    body = f"action=approve&step=gate&csrf={csrf_of(confirm)}".encode()
    done = http(f"{base}/runs/{run_id}/actions", method="POST", data=body, headers=FORM)
    assert "StepApproved" in done.text
    while as_json(cli(data, "show", run_id, "--json"))["status"] != "succeeded":
        assert time.monotonic() < deadline
        time.sleep(0.1)


def test_without_the_ui_extra_wfa_ui_says_what_to_install_and_exits_2(tmp_path: Path) -> None:
    code = "import sys; sys.modules['starlette'] = None; from engine.cli import main; main()"
    result = subprocess.run(
        [sys.executable, "-c", code, "--data", str(tmp_path), "ui"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: the web UI needs the [ui] extra: pip install 'workflow-automator[ui]' "
        "(Starlette, uvicorn, Jinja2)"
    ]


def test_a_port_in_use_is_one_error_line_and_exit_2(tmp_path: Path) -> None:
    data, _ = waiting_run(tmp_path)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = cli(data, "ui", "--port", str(port))
    assert result.returncode == 2
    assert result.stderr.startswith(f"error: wfa ui: cannot listen on 127.0.0.1:{port}")


def test_a_run_links_to_its_trace_when_jaeger_ui_url_is_set(
    tmp_path: Path, procs: Processes
) -> None:
    from engine.telemetry import trace_id_of

    data, run_id = waiting_run(tmp_path)
    assert "trace in Jaeger" not in http(f"{procs.ui(data)}/runs/{run_id}").text
    config = write(tmp_path, "wfa.yaml", "telemetry: {jaeger_ui_url: 'http://127.0.0.1:16686/'}\n")
    base = procs.ui(data, env={"WFA_CONFIG": str(config)})
    link = f'href="http://127.0.0.1:16686/trace/{trace_id_of(run_id)}"'
    assert link in http(f"{base}/runs/{run_id}").text


def test_engine_ui_mounts_in_a_users_starlette_app_under_a_prefix(tmp_path: Path) -> None:
    import threading

    import uvicorn
    from starlette.applications import Starlette
    from starlette.routing import Mount

    from engine import Engine
    from engine.ui import create_app

    data, run_id = waiting_run(tmp_path)
    with Engine(data_dir=data, drive=False, create=False) as eng:
        app = Starlette(routes=[Mount("/wfa", app=create_app(eng, read_only=True))])
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
        thread.start()
        try:
            base = f"http://127.0.0.1:{sock.getsockname()[1]}/wfa"
            deadline = time.monotonic() + 10
            while not server.started:
                assert time.monotonic() < deadline
                time.sleep(0.02)
            runs = http(f"{base}/")
            assert runs.status == 200 and f'href="/wfa/runs/{run_id}"' in runs.text
            page = http(f"{base}/runs/{run_id}").text
            assert (
                'src="/wfa/static/app.js"' in page
                and f'data-stream="/wfa/runs/{run_id}/live"' in page
            )
            assert http(f"{base}/static/app.js").status == 200
            assert json.loads(http(f"{base}/api/runs/{run_id}").body)["run_id"] == run_id
        finally:
            server.should_exit = True
            thread.join(10)


def test_sigterm_stops_wfa_ui_with_exit_0_even_with_a_live_stream_open(
    tmp_path: Path, procs: Processes
) -> None:
    import os
    import signal

    data, run_id = waiting_run(tmp_path)
    base = procs.ui(data)
    stream = _stream(f"{base}/runs/{run_id}/live")
    process = procs.started[-1]
    os.kill(process.pid, signal.SIGTERM)
    assert process.wait(15) == 0
    stream.close()


PAUSING_FLOW = """
name: pausing
steps:
  - id: bad
    run: ["python3", "-c", "import sys; sys.exit(4)"]
    retry: {max_attempts: 1}
    on_failure: pause
  - id: after
    after: [bad]
    run: ["python3", "-c", "import sys; print(sys.argv[1])", "${{ steps.bad.outputs.v }}"]
"""


def test_skip_with_outputs_cancel_and_restart_go_through_the_ui(
    tmp_path: Path, procs: Processes
) -> None:
    data = tmp_path / "data"
    server = procs.start(data, "serve", "--ui", "--ui-port", "0")
    base = procs.url_of(server)
    flow = write(tmp_path, "pausing.yaml", PAUSING_FLOW)
    run_id = as_json(cli(data, "run", flow, "--detach", "--json"))["run_id"]
    deadline = time.monotonic() + 30
    while "intervention of bad" not in http(f"{base}/api/runs/{run_id}").text:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    page = http(f"{base}/runs/{run_id}").text
    assert 'data-action="skip" data-step="bad"' in page and 'data-action="retry"' in page
    csrf = csrf_of(http(f"{base}/runs/{run_id}/confirm?action=skip&step=bad").text)
    body = f"action=skip&step=bad&csrf={csrf}&outputs=%7B%22v%22%3A+42%7D".encode()
    done = http(f"{base}/runs/{run_id}/actions", method="POST", data=body, headers=FORM)
    assert "StepSkippedManually" in done.text
    while as_json(cli(data, "show", run_id, "--json"))["status"] != "succeeded":
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert cli(data, "logs", run_id, "after").stdout == "42\n"
    assert 'data-action="restart"' in http(f"{base}/runs/{run_id}").text
    body = f"action=restart&step=after&csrf={csrf}".encode()
    restarted = http(f"{base}/runs/{run_id}/actions", method="POST", data=body, headers=FORM)
    new_run = re.search(r'id="new-run" href="/runs/([^"]+)"', restarted.text)
    assert new_run, restarted.text
    restarted_run = as_json(cli(data, "show", new_run.group(1), "--json"))
    assert {s["id"] for s in restarted_run["steps"]} == {"bad", "after"}
    waiting = write(tmp_path, "flow.yaml", WAITING_FLOW)
    other = as_json(cli(data, "run", waiting, "--detach", "--json"))["run_id"]
    while "approval of gate" not in http(f"{base}/api/runs/{other}").text:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    body = f"action=cancel&csrf={csrf}".encode()
    cancelled = http(f"{base}/runs/{other}/actions", method="POST", data=body, headers=FORM)
    assert "RunCancelled" in cancelled.text
    assert as_json(cli(data, "show", other, "--json"))["status"] == "cancelled"
