"""The monitor in a real headless browser: Playwright drives Debian's chromium
(``make test`` installs it; Playwright's own browser download is not used). A
throwaway redis-server, a ThreadRunner and the conformance tasks make real
work; the test loads the main page, filters it, opens the failed invocation
and reads its traceback, and opens the timeline, saving a screenshot of each
view under its tmp dir, and (with PYNENC_UPDATE_DOCS=1) the main view as
docs/monitor.png, the picture in the README and docs/operations.md."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest
from playwright.sync_api import expect, sync_playwright

from pynenc_ray.monitor.history import LoadHistory
from pynenc_ray.monitor.web import create_app
from tests.conformance import tasks
from tests.conftest import running, unique_app_id
from tests.monitor.serving import serving

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = next((p for p in (shutil.which("chromium"), "/usr/bin/chromium")
                 if p and Path(p).is_file()), None)
WAIT_MS = 15_000

pytestmark = [
    pytest.mark.redis,
    pytest.mark.timeout(240),
    pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (`make "
                       "test` installs it; by hand: apt-get install chromium)"),
]


def test_monitor_in_a_headless_browser(redis_url, tmp_path):
    app = tasks.app.reconfigure(replace=True, backend="redis", redis_url=redis_url,
                                app_id=unique_app_id("monb"), runner={"max_threads": 4})
    with running(app):
        adds = list(tasks.add.parallelize([(i, i) for i in range(6)]))
        sleeps = list(tasks.sleep.parallelize([0.2, 0.3]))
        failed = tasks.fail("the monitor test's failure")
        flaky = tasks.flaky("monitor", 1)  # fails once, retried, succeeds
        top = tasks.parent(3)  # two children
        for inv in [*adds, *sleeps, failed, flaky, top]:
            assert inv.wait(timeout=60), inv
        # waiting where no runner serves: one at priority 5, one scheduled for later
        tasks.add.with_options(queue="io", priority=5)(1, 1)
        tasks.add.with_options(queue="io", delay_sec=3600)(2, 2)

        history = LoadHistory(sample_sec=0.5)  # two samples well within a wait
        with serving(create_app(app, refresh_sec=0.5, history=history)) as base, \
                sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True)
            try:
                page = browser.new_page(viewport={"width": 1400, "height": 900})
                page.set_default_timeout(WAIT_MS)
                expect.set_options(timeout=WAIT_MS)
                rows = page.locator("#invocation-list tr.inv")

                # the main page: queues, runners, every invocation of the last 15 minutes
                page.goto(base + "/")
                expect(page.locator("header")).to_contain_text(app.app_id)
                expect(rows).to_have_count(15)  # 6 + 2 + 1 + 1 + 1 + its 2 children + 2 waiting
                expect(page.locator("#runners tr.runner")).to_have_count(1)
                expect(page.locator("#runners tr.runner")).to_contain_text("ThreadRunner")
                io = page.locator("#queues tr[data-queue=io]")
                expect(io).to_contain_text("p5: 1")
                expect(io).to_contain_text("no runner serves it")

                # the load charts, drawn server-side: the queue depth has the io queue's
                # line once two samples are in, and the throughput chart its axis
                expect(page.locator("#throughput-chart svg")).to_be_visible()
                expect(page.locator("#depth-chart svg")).to_be_visible()

                # it refreshes itself without a reload: new work shows up
                page.evaluate("window.notReloaded = true")
                assert tasks.add(50, 50).get(timeout=30) == 100
                expect(rows).to_have_count(16)
                expect(page.locator("#depth-chart polyline[data-series=io]")).to_have_count(1)
                expect(page.locator("#throughput-chart polyline[data-series=SUCCESS]")
                       ).to_have_count(1)
                assert page.evaluate("window.notReloaded") is True
                page.screenshot(path=str(tmp_path / "main.png"), full_page=True)
                if os.environ.get("PYNENC_UPDATE_DOCS"):  # else a test run leaves docs alone
                    page.screenshot(path=str(REPO / "docs" / "monitor.png"), full_page=True)

                # filter by task, then by status
                page.fill("input[name=task]", "add")
                page.click("form.filters button[type=submit]")
                expect(page).to_have_url(re.compile(r"task=add"))
                expect(rows).to_have_count(9)
                for task_id in rows.evaluate_all("rs => rs.map(r => r.dataset.task)"):
                    assert task_id == "tests.conformance.tasks:add"
                page.screenshot(path=str(tmp_path / "filter_task.png"), full_page=True)
                page.fill("input[name=task]", "")
                page.select_option("select[name=status]", "FAILED")
                page.click("form.filters button[type=submit]")
                expect(page).to_have_url(re.compile(r"status=FAILED"))
                expect(rows).to_have_count(1)
                expect(rows.first).to_have_attribute("data-status", "FAILED")
                page.screenshot(path=str(tmp_path / "filter_failed.png"), full_page=True)

                # the failed invocation: its traceback, its history
                rows.first.locator("a.inv-link").click()
                expect(page).to_have_url(re.compile(f"/invocations/{failed.invocation_id}$"))
                expect(page.locator("#inv-status")).to_have_text("FAILED")
                expect(page.locator("#error-class")).to_contain_text("CustomError")
                expect(page.locator("#traceback")).to_contain_text(
                    "CustomError: the monitor test's failure")
                expect(page.locator("#arguments")).to_contain_text("the monitor test's failure")
                expect(page.locator("#history tbody tr").last).to_contain_text("FAILED")
                expect(page.locator("form[action$='/cancel']")).to_have_count(0)  # read-only
                page.screenshot(path=str(tmp_path / "invocation.png"), full_page=True)

                # a parent lists its children, which link back to it
                page.goto(f"{base}/invocations/{top.invocation_id}")
                expect(page.locator("#children tbody tr")).to_have_count(2)
                page.locator("#children a").first.click()
                expect(page.locator("a[href='/invocations/" + top.invocation_id + "']")
                       ).to_have_count(1)

                # the timeline: a bar per wait and run; a bar opens its invocation
                page.click("header nav a[href='/timeline']")
                expect(page).to_have_url(re.compile(r"/timeline$"))
                svg = page.locator("#timeline svg")
                expect(svg).to_be_visible()
                failed_bar = svg.locator(
                    f'rect.bar.failed[data-invocation="{failed.invocation_id}"]')
                expect(failed_bar).to_have_count(1)
                expect(svg.locator("rect.bar.success").first).to_be_attached()
                page.screenshot(path=str(tmp_path / "timeline.png"), full_page=True)
                failed_bar.dispatch_event("click")
                expect(page).to_have_url(re.compile(f"/invocations/{failed.invocation_id}$"))
            finally:
                browser.close()
    for name in ("main", "filter_task", "filter_failed", "invocation", "timeline"):
        assert (tmp_path / f"{name}.png").stat().st_size > 10_000, name
