"""The web UI in a real browser (Playwright driving Debian's chromium) against a real stack.

Skipped locally when no chromium is installed; under CI a missing browser fails the test
(``.ci/run`` installs it).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from flowbus.engine.api_tokens import create_token
from flowbus.engine.store import EventStore
from tests.integration.stack import Stack, wait_until

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

pytestmark = pytest.mark.skipif(
    CHROMIUM is None and not os.environ.get("CI"), reason="no chromium to drive"
)


#: The API's admin token: the tests' own API calls; the browser logs in as an operator.
ADMIN = "web-ui-admin-token"


def api_get(stack: Stack, path: str) -> httpx.Response:
    """``GET /api/v1<path>`` as the admin."""
    return httpx.get(f"{stack.api_url}/api/v1{path}", headers={"authorization": f"Bearer {ADMIN}"})


@pytest.fixture
def stack(stack: Stack) -> Stack:
    """The shared stack with an orchestrator (its API under tokens), three deployments and an
    agent. Its agent never dies here, so its lease is longer than the stack's 2 s: a browser
    and a busy machine can delay a heartbeat past that, and a run crashed and run again is not
    what these tests show."""
    stack.env["FLOWBUS_LEASE_SECONDS"] = "10"
    stack.env["FLOWBUS_API_TOKEN"] = ADMIN
    stack.start_orchestrator()
    stack.deploy("quick")
    stack.deploy("sleepy")
    stack.deploy("fails")
    stack.start_agent("agent-1")
    return stack


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One chromium for the module's tests; each test gets its own context (cookies, storage)."""
    from playwright.sync_api import sync_playwright

    assert CHROMIUM is not None, "chromium is not installed (CI installs it in .ci/run)"
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def browser_page(stack: Stack, browser: Any) -> Iterator[object]:
    context = browser.new_context(viewport={"width": 1366, "height": 850})
    try:
        page = context.new_page()
        log_in(page, stack, "operator")  # every page here as an operator sees it
        yield page
    finally:
        context.close()


def log_in(page: Any, stack: Stack, role: str) -> None:
    """Log the browser in on /login with a new token of ``role``."""
    from playwright.sync_api import expect

    async def make(store: EventStore) -> str:
        return await create_token(store, f"ui-{role}", role)

    token = stack.with_store(make)
    page.goto(stack.api_url + "/login")
    page.fill("#token", token)
    page.get_by_role("button", name="Log in").click()
    expect(page.locator("#me")).to_contain_text(f"ui-{role} ({role})")
    expect(page.locator("h1")).to_have_text("Dashboard")


def test_run_a_deployment_from_its_form_and_watch_it_complete(
    stack: Stack, browser_page: object, tmp_path: Path
) -> None:
    from playwright.sync_api import Page, expect

    page: Page = browser_page  # type: ignore[assignment]
    page.goto(stack.api_url + "/ui/#/deployments")
    page.get_by_role("link", name="quick/test").click()
    expect(page.locator("#run-form")).to_be_visible()

    expect(page.locator("input[name=n]")).to_have_attribute("type", "number")  # from the schema
    page.fill("input[name=n]", "4")
    page.get_by_role("button", name="Run").click()

    # The run page follows the run live, without a reload.
    expect(page.locator("h1 .badge")).to_have_text("Completed", timeout=30_000)
    expect(page.locator("#states")).to_contain_text("Running")
    expect(page.locator("#logs")).to_contain_text("adding 4 doubles", timeout=10_000)
    expect(page.locator(".gantt .row")).to_have_count(4)
    expect(page.locator("#result")).to_have_text("12")  # 0 + 2 + 4 + 6
    page.screenshot(path=str(tmp_path / "run.png"))

    page.get_by_role("link", name="Runs").click()
    expect(page.locator("h1")).to_have_text("Flow runs")
    expect(page.locator("tbody tr")).to_have_count(1)
    expect(page.locator("tbody tr .badge")).to_have_text("Completed")


def _publish_again(nats_url: str, run_id: str, state_type: str) -> None:
    """Publish a copy of one of the run's state events on the events stream again, as a late
    publication puts an older state after newer ones (the store already holds it: only
    subscribers see the copy)."""
    import asyncio
    import concurrent.futures

    import nats
    import orjson

    from flowbus.broker import subjects

    async def main() -> None:
        connection = await nats.connect(nats_url)
        try:
            js = connection.jetstream()
            subject = subjects.event_subject(run_id, "flow_run.state")
            sub = await js.subscribe(subject, ordered_consumer=True)
            while True:
                message = await sub.next_msg(timeout=10)
                if orjson.loads(message.data)["state"]["type"] == state_type:
                    break
            # Without its message id: the stream would drop the copy as a duplicate.
            headers = {k: v for k, v in (message.headers or {}).items() if k != "Nats-Msg-Id"}
            await js.publish(subject, message.data, headers=headers)
        finally:
            await connection.close()

    # In a thread of its own: Playwright's sync API keeps a loop running in this one.
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, main()).result()


def test_the_runs_list_keeps_a_runs_newest_state_when_an_older_one_arrives_late(
    stack: Stack, browser_page: object
) -> None:
    """Events reach the stream in publication order, which is not always the run's order (the
    orchestrator publishes Pending after it answers the claim, the agent Running at once): the
    list shows the state with the highest sequence number it has seen."""
    from playwright.sync_api import Page, expect

    page: Page = browser_page  # type: ignore[assignment]
    first = stack.submit_over_http("quick/test", n=1)
    stack.final_states(first)
    page.goto(stack.api_url + "/ui/#/runs")
    expect(page.locator(f"tr[data-run='{first}'] .badge")).to_have_text("Completed")

    _publish_again(stack.url, first, "PENDING")
    # Events reach the page in stream order: once the next run's row is shown, the late copy
    # has been seen too.
    second = stack.submit_over_http("quick/test", n=2)
    expect(page.locator(f"tr[data-run='{second}']")).to_be_visible(timeout=30_000)
    expect(page.locator(f"tr[data-run='{first}'] .badge")).to_have_text("Completed")


def test_cancel_a_long_run_from_its_page(stack: Stack, browser_page: object) -> None:
    from playwright.sync_api import Page, expect

    page: Page = browser_page  # type: ignore[assignment]
    page.goto(stack.api_url + "/ui/#/deployments/sleepy/test")
    page.fill("input[name=seconds]", "60")
    page.get_by_role("button", name="Run").click()
    expect(page.locator("h1 .badge")).to_have_text("Running", timeout=30_000)
    page.get_by_role("button", name="Cancel run").click()
    expect(page.locator("h1 .badge")).to_have_text("Cancelled", timeout=10_000)
    expect(page.locator("#states")).to_contain_text("Cancelling")
    # Who started it and who cancelled it: the operator logged in (the audit trail says so).
    page.reload()
    expect(page.locator("#started-by")).to_contain_text("started by ui-operator")
    expect(page.locator("#cancelled-by")).to_contain_text("cancelled by ui-operator")


def test_a_viewer_sees_no_buttons_it_may_not_use_and_logs_out(stack: Stack, browser: Any) -> None:
    from playwright.sync_api import expect

    run_id = stack.submit_over_http("sleepy/test", seconds=60)
    context = browser.new_context()
    try:
        page = context.new_page()
        log_in(page, stack, "viewer")
        page.goto(stack.api_url + "/ui/#/deployments/sleepy/test")
        expect(page.locator("h1")).to_have_text("sleepy/test")
        expect(page.locator("#run-form")).to_have_count(0)
        page.goto(f"{stack.api_url}/ui/#/runs/{run_id}")
        expect(page.locator("h1 .badge")).to_have_text("Running", timeout=30_000)
        expect(page.locator("#cancel")).to_have_count(0)
        # The server refuses it anyway, with the session's own CSRF token.
        status = page.evaluate(
            """async (id) => (await fetch(`/api/v1/runs/${id}/cancel`, {method: "POST",
                 headers: {"X-CSRF-Token": document.cookie.split("flowbus_csrf=")[1]
                                              .split(";")[0]}})).status""",
            run_id,
        )
        assert status == 403
        page.get_by_role("button", name="Log out").click()
        expect(page.locator("h1")).to_have_text("Log in")
        page.goto(stack.api_url + "/ui/#/runs")
        expect(page.locator("h1")).to_have_text("Log in")
    finally:
        context.close()


def test_the_form_shows_the_servers_verdict_on_invalid_parameters(
    stack: Stack, browser_page: object
) -> None:
    from playwright.sync_api import Page, expect

    page: Page = browser_page  # type: ignore[assignment]
    page.goto(stack.api_url + "/ui/#/deployments/sleepy/test")
    page.fill("input[name=seconds]", "")
    page.evaluate("document.querySelector('input[name=seconds]').type = 'text'")
    page.fill("input[name=seconds]", "soon")
    page.evaluate("document.querySelector('input[name=seconds]').dataset.kind = 'string'")
    page.get_by_role("button", name="Run").click()
    expect(page.locator(".notice")).to_contain_text("valid number")
    expect(page.locator("#error-seconds")).to_contain_text("valid number")


def test_with_a_token_the_ui_asks_to_log_in(tmp_path: Path, browser: Any) -> None:
    from playwright.sync_api import expect

    stack = Stack(tmp_path, env={"FLOWBUS_API_TOKEN": "s3cret"})
    try:
        stack.start_orchestrator()
        stack.deploy("quick")
        context = browser.new_context()
        try:
            page = context.new_page()
            page.goto(stack.api_url + "/ui/#/deployments")
            expect(page.locator("h1")).to_have_text("Log in")
            page.fill("#token", "guess")
            page.get_by_role("button", name="Log in").click()
            expect(page.locator(".notice")).to_contain_text("not a valid token")
            page.fill("#token", "s3cret")
            page.get_by_role("button", name="Log in").click()
            expect(page.locator("h1")).to_have_text("Dashboard")
            page.get_by_role("link", name="Deployments").click()
            expect(page.get_by_role("link", name="quick/test")).to_be_visible()
        finally:
            context.close()
    finally:
        stack.close()


def test_the_dashboard_follows_runs_live_and_the_feed_shows_their_events(
    stack: Stack, browser_page: object
) -> None:
    from playwright.sync_api import Page, expect

    page: Page = browser_page  # type: ignore[assignment]
    page.goto(stack.api_url + "/ui/")
    expect(page.locator("h1")).to_have_text("Dashboard")
    expect(page.locator("[data-card='agents online'] .card-value")).to_have_text("1")
    expect(page.locator("#agents")).to_contain_text("agent-1")
    expect(page.locator("[data-card='completed'] .card-value")).to_have_text("0")

    # Runs that end while the page is open change it without a reload.
    stack.submit_over_http("quick/test", n=2)
    failing = stack.submit_over_http("fails/test", reason="no such file: raw/2026-11-24.csv")
    expect(page.locator("[data-card='completed'] .card-value")).to_have_text("1", timeout=20_000)
    expect(page.locator("[data-card='failed or crashed'] .card-value")).to_have_text(
        "1", timeout=20_000
    )
    expect(page.locator("[data-card='runs, last 24 h'] .card-value")).to_have_text("2")
    expect(page.locator("#chart .seg.s-COMPLETED")).to_have_count(1)
    expect(page.locator("#chart .seg.s-FAILED")).to_have_count(1)
    expect(page.locator("#queues [data-queue=default]")).to_be_visible()
    page.locator("#failures a").click()
    expect(page).to_have_url(f"{stack.api_url}/ui/#/runs/{failing}")
    expect(page.locator(".error")).to_contain_text("no such file: raw/2026-11-24.csv")

    # The feed shows the last minute at once, then what happens next.
    page.get_by_role("link", name="Events").click()
    expect(page.locator("#feed tr[data-type='flow_run.created']")).to_have_count(2)
    stack.submit_over_http("quick/test", n=1)
    expect(page.locator("#feed tr[data-type='flow_run.created']")).to_have_count(3)
    expect(page.locator("#feed tr[data-type='flow_run.state']").first).to_contain_text(
        "Completed", timeout=20_000
    )
    # Only the chosen types, after Apply.
    for kind in ("task_run.created", "task_run.state", "log", "deployment.saved"):
        page.get_by_label(kind, exact=True).uncheck()
    page.get_by_role("button", name="Apply").click()
    expect(page.locator("#feed tr").first).to_be_visible()
    types = set(page.locator("#feed tr").evaluate_all("rows => rows.map(r => r.dataset.type)"))
    assert types <= {"flow_run.created", "flow_run.state"}, types


def test_pause_and_resume_a_queue_from_the_queues_page(stack: Stack, browser_page: object) -> None:
    from playwright.sync_api import Page, expect

    page: Page = browser_page  # type: ignore[assignment]
    page.goto(stack.api_url + "/ui/#/queues")
    row = page.locator("#queues tr[data-queue=default]")
    expect(row).to_contain_text("active")
    expect(page.locator("#agents tr[data-agent=agent-1]")).to_contain_text("online")

    row.get_by_role("button", name="Pause").click()
    expect(row).to_contain_text("paused")
    queues = api_get(stack, "/queues").json()
    assert [q["settings"]["paused"] for q in queues if q["settings"]["name"] == "default"] == [True]

    run_id = stack.submit_over_http("quick/test", n=1)
    expect(row.locator("td").nth(2)).to_have_text("1", timeout=10_000)  # waiting, not taken
    assert stack.states(run_id) == ["Scheduled"]

    row.get_by_role("button", name="Resume").click()
    expect(row).to_contain_text("active")
    assert stack.final_states(run_id)[-1] == "Completed"


def test_pause_and_resume_a_schedule_from_its_deployment_page(
    stack: Stack, browser_page: object
) -> None:
    from playwright.sync_api import Page, expect

    stack.cli("deploy", "flows.py:noop", "-n", "nightly", "--cron", "0 6 * * *",
              "--timezone", "Europe/Paris")  # fmt: skip
    page: Page = browser_page  # type: ignore[assignment]
    page.goto(stack.api_url + "/ui/#/deployments")
    expect(page.locator("tr", has_text="noop/nightly")).to_contain_text("1 active of 1")
    page.get_by_role("link", name="noop/nightly").click()
    schedule = page.locator("#schedules [data-schedule='1']")
    expect(schedule).to_contain_text("cron 0 6 * * * (Europe/Paris)")
    expect(schedule).to_contain_text("next")
    schedule.get_by_role("button", name="Pause").click()
    expect(schedule).to_contain_text("paused")
    details = api_get(stack, "/deployments/noop/nightly").json()
    assert details["schedules"][0]["active"] is False
    schedule.get_by_role("button", name="Resume").click()
    expect(schedule).to_contain_text("active")
    assert api_get(stack, "/schedules").json()[0]["active"] is True


def test_blocks_and_variables_page_masks_secrets(stack: Stack, browser_page: object) -> None:
    from playwright.sync_api import Page, expect

    stack.cli("block", "set", "webhook/alerts", "url=https://hooks.example.com/etl",
              "token=tok-9d8e7f6a5b")  # fmt: skip
    stack.cli("variable", "set", "region", "eu-west-1")
    page: Page = browser_page  # type: ignore[assignment]
    page.goto(stack.api_url + "/ui/#/config")
    block = page.locator("#blocks tr[data-block='webhook/alerts']")
    expect(block).to_contain_text("https://hooks.example.com/etl")
    expect(block).to_contain_text("********")
    expect(page.locator("#variables tr[data-variable=region]")).to_contain_text("eu-west-1")
    assert "tok-9d8e7f6a5b" not in page.content()


def test_resume_a_paused_run_from_its_page_with_input(stack: Stack, browser_page: object) -> None:
    from playwright.sync_api import Page, expect

    stack.deploy("needs_approval")
    run_id = stack.submit_over_http("needs-approval/test", amount=7)
    page: Page = browser_page  # type: ignore[assignment]
    page.goto(f"{stack.api_url}/ui/#/runs/{run_id}")
    expect(page.locator("h1 .badge")).to_have_text("Paused", timeout=20_000)
    form = page.locator("#resume-form")
    expect(form).to_contain_text("Paused at pause-1")
    form.locator("input[name=note]").fill("looks right")
    form.locator("input[name=approved]").check()
    form.get_by_role("button", name="Resume").click()
    expect(page.locator("h1 .badge")).to_have_text("Completed", timeout=20_000)
    expect(page.locator("#resume-form")).to_have_count(0)
    # The page follows the live events; the store may trail them by a commit.
    wait_until(
        lambda: api_get(stack, f"/runs/{run_id}").json()["result"] == "approved: looks right",
        what="the run's result to be recorded",
    )


def test_an_automation_shows_its_last_firing_and_the_run_it_started(
    stack: Stack, browser_page: object, tmp_path: Path
) -> None:
    from playwright.sync_api import Page, expect

    (tmp_path / "a.yaml").write_text(
        "name: on-upload\n"
        "trigger: {kind: event, match: {type: file.uploaded}}\n"
        "actions: [{kind: run-deployment, deployment: quick/test, parameters: {n: 2}}]\n"
    )
    stack.cli("automation", "create", str(tmp_path / "a.yaml"))
    page: Page = browser_page  # type: ignore[assignment]
    page.goto(stack.api_url + "/ui/#/automations")
    row = page.locator("#automations tr[data-automation=on-upload]")
    expect(row).to_contain_text("never")
    stack.cli("events", "emit", "file.uploaded", "--id", "upload-77")
    expect(row).to_contain_text("on file.uploaded upload-77", timeout=20_000)  # no reload
    row.get_by_role("link").click()
    expect(page.locator("#triggered-by")).to_contain_text("on-upload")
    expect(page.locator("h1 .badge")).to_have_text("Completed", timeout=20_000)


def test_a_runs_artifacts_are_rendered_on_its_page(stack: Stack, browser_page: object) -> None:
    from playwright.sync_api import Page, expect

    page: Page = browser_page  # type: ignore[assignment]
    stack.deploy("with_artifacts")
    run_id = stack.submit_over_http("with-artifacts/test", rows=3)
    assert stack.final_states(run_id)[-1] == "Completed"
    page.goto(f"{stack.api_url}/ui/#/runs/{run_id}")
    artifacts = page.locator("#artifacts")
    expect(artifacts.locator("h2")).to_have_text("Artifacts (2)", timeout=15_000)
    table = artifacts.locator("[data-artifact-type=table] table")
    expect(table.locator("th")).to_have_text(["row"])
    expect(table.locator("tbody tr")).to_have_count(3)
    report = artifacts.locator("[data-artifact-type=markdown] .markdown")
    expect(report.locator("h3")).to_have_text("Report")  # "# Report" as a heading, not text
    expect(report.locator("p")).to_have_text("3 rows")


def test_a_runs_page_shows_its_result_as_json_and_which_task_runs_retried(
    stack: Stack, browser_page: object
) -> None:
    from playwright.sync_api import Page, expect

    page: Page = browser_page  # type: ignore[assignment]
    stack.deploy("retried_once")
    run_id = stack.submit_over_http("retried-once/test")
    page.goto(f"{stack.api_url}/ui/#/runs/{run_id}")
    expect(page.locator("h1 .badge")).to_have_text("Completed", timeout=30_000)
    # JSON as other languages read it, not Python's repr ({'status': 'ok', ...}).
    expect(page.locator("#result")).to_have_text('{ "status": "ok", "rows": [ 1, 2 ] }')
    expect(page.locator(".gantt .retried")).to_have_text("↻ 1 retry")


def test_a_deployment_named_with_spaces_runs_from_its_page(
    stack: Stack, browser_page: object
) -> None:
    from playwright.sync_api import Page, expect

    page: Page = browser_page  # type: ignore[assignment]
    stack.deploy("quick", name="My First Deployment")
    page.goto(stack.api_url + "/ui/#/deployments")
    page.get_by_role("link", name="quick/My First Deployment").click()
    expect(page.locator("#run-form")).to_be_visible()
    page.get_by_role("button", name="Run").click()
    expect(page.locator("h1 .badge")).to_have_text("Completed", timeout=30_000)


def test_a_runs_page_shows_its_attempts_as_the_api_does(
    stack: Stack, browser_page: object, tmp_path: Path
) -> None:
    """A run that crashed (its agent killed -9 in its third task), was recovered, then failed
    and was retried from its page: the live page lists the states the API lists, in order, each
    attempt marked, and the task runs that replayed marked as such."""
    import signal

    from playwright.sync_api import Page, expect

    page: Page = browser_page  # type: ignore[assignment]
    ledger, hang, fail = tmp_path / "ledger", tmp_path / "hang", tmp_path / "fail"
    stack.deploy("three_steps", crash_retries=1)
    doomed = stack.start_agent("agent-doomed")
    run_id = stack.submit_over_http(
        "three-steps/test", ledger=str(ledger), marker=str(hang), action="hang"
    )
    page.goto(f"{stack.api_url}/ui/#/runs/{run_id}")
    wait_until(lambda: hang.exists(), what="the third task to hang")
    claims = [e.data["agent"] for e in stack.stream(run_id) if e.data.get("attempt")]
    if claims[-1] == "agent-doomed":
        doomed.signal(signal.SIGKILL)
    else:  # the fixture's agent took it: kill that one, the doomed one takes over
        [agent] = [d for d in stack.daemons if d.name == "agent-1"]
        agent.signal(signal.SIGKILL)
    expect(page.locator("h1 .badge")).to_have_text("Completed", timeout=60_000)

    def same_as_api() -> None:
        wait_until(lambda: stack.states(run_id)[-1:] == ["Completed"], what="the store")
        api = api_get(stack, f"/runs/{run_id}").json()
        names = [h["name"] for h in api["state_history"]]
        expect(page.locator("#states li .badge")).to_have_text(names, timeout=20_000)
        attempts = [f"attempt {h['attempt']}" for h in api["state_history"] if "attempt" in h]
        expect(page.locator("#states .attempt")).to_have_text(attempts)
        replayed = sum(1 for t in api["task_runs"] if t["replay_of"])
        expect(page.locator(".gantt .replayed")).to_have_count(replayed)

    same_as_api()
    assert stack.states(run_id).count("Crashed") == 1
    # Now make it fail, and retry it from its page: a new attempt, its first tasks replayed.
    fail_run = stack.submit_over_http(
        "three-steps/test", ledger=str(ledger), marker=str(fail), action="fail"
    )
    page.goto(f"{stack.api_url}/ui/#/runs/{fail_run}")
    expect(page.locator("h1 .badge")).to_have_text("Failed", timeout=60_000)
    page.get_by_role("button", name="Retry run").click()
    expect(page.locator("h1 .badge")).to_have_text("Completed", timeout=60_000)
    run_id = fail_run
    same_as_api()
    expect(page.locator(".gantt .replayed")).to_have_count(2)
    expect(page.locator("#states .attempt")).to_have_text(["attempt 1", "attempt 2"])
