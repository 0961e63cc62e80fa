"""The monitor's routes over HTTP (a real uvicorn on loopback, the memory
backend in this process): pages, filters, errors, the read-only rule and the
opt-in actions with their token and origin checks."""

from __future__ import annotations

import json
import re
from urllib.parse import quote

import pytest

from pynenc_ray.monitor.web import create_app, fmt_seconds
from pynenc_ray.status import InvocationStatus
from pynenc_ray.testing import run_pending
from tests.conformance import tasks
from tests.conftest import unique_app_id
from tests.monitor.serving import request, serving

pytestmark = pytest.mark.timeout(60)
S = InvocationStatus


@pytest.fixture
def app():
    app = tasks.app.reconfigure(replace=True, backend="memory", app_id=unique_app_id("monw"))
    return app


def token_of(page: str) -> str:
    found = re.search(r'name="token" value="([^"]+)"', page)
    assert found, "no action form on the page"
    return found.group(1)


def test_pages_render_and_filters_narrow_the_list(app):
    adds = tasks.add.parallelize([(i, i) for i in range(3)])
    failed = tasks.fail("<b>not markup</b>")
    run_pending(app)
    with serving(create_app(app)) as base:
        status, page, _ = request(base + "/")
        assert status == 200 and "read-only" in page
        assert page.count('class="inv status-') == 4
        assert "&lt;b&gt;not markup" not in page  # messages are not on the list
        _, page, _ = request(base + "/?status=failed&window=15m")
        assert page.count('class="inv status-') == 1 and failed.invocation_id in page
        _, page, _ = request(base + "/fragment/invocations?task=add")
        assert page.count('class="inv status-') == 3 and "<html" not in page
        assert all(i.invocation_id in page for i in adds)
        status, page, _ = request(f"{base}/invocations/{failed.invocation_id}")
        assert status == 200 and "CustomError" in page
        assert "&lt;b&gt;not markup&lt;/b&gt;" in page and "<b>not markup</b>" not in page
        status, page, _ = request(base + "/timeline?window=1h")
        assert status == 200 and page.count('class="bar success"') == 3
        assert "<svg" in page
        _, fragment, _ = request(base + "/fragment/timeline?task=fail")
        assert 'class="bar failed"' in fragment and 'class="bar success"' not in fragment
        _, page, _ = request(base + "/fragment/overview")
        assert "SUCCESS" in page and 'id="queues"' in page
        status, js, _ = request(base + "/static/monitor.js")
        assert status == 200 and "data-refresh" in js


def test_bad_filters_unknown_ids_and_foreign_hosts_are_refused(app):
    with serving(create_app(app)) as base:
        status, page, _ = request(base + "/?window=forever")
        assert status == 400 and "time window" in page
        status, page, _ = request(base + "/timeline?status=BROKEN")
        assert status == 400 and "REGISTERED" in page
        status, page, _ = request(base + "/invocations/nothing-here")
        assert status == 404 and "not stored" in page
        status, _, _ = request(base + "/", headers={"Host": "attacker.example"})
        assert status == 400
        status, _, _ = request(base + "/static/other.js")
        assert status == 404


def test_read_only_refuses_actions_and_shows_no_buttons(app):
    inv = tasks.add(1, 2)  # stays REGISTERED: nothing runs it
    with serving(create_app(app)) as base:
        _, page, _ = request(f"{base}/invocations/{inv.invocation_id}")
        assert 'name="token"' not in page and "cancel</button>" not in page
        for action in ("cancel", "retry"):
            status, text, _ = request(f"{base}/invocations/{inv.invocation_id}/{action}",
                                      "POST", b"token=x")
            assert status == 403 and "--allow-actions" in text
        status, _, _ = request(f"{base}/invocations/{inv.invocation_id}/cancel")
        assert status == 405  # GET never acts
    assert inv.status == S.REGISTERED


def test_with_allow_actions_cancel_and_retry_work_from_the_page_only(app):
    inv = tasks.add.with_options(priority=4)(2, 3)
    with serving(create_app(app, allow_actions=True)) as base:
        url = f"{base}/invocations/{inv.invocation_id}"
        _, page, _ = request(url)
        assert "actions enabled" in page and "cancel</button>" in page
        token = token_of(page)
        status, text, _ = request(url + "/cancel", "POST", b"token=wrong")
        assert status == 403 and "token" in text
        status, _, _ = request(url + "/cancel", "POST", "token=\u00e9t\u00e9".encode())
        assert status == 403
        status, _, _ = request(url + "/cancel", "POST", f"token={token}".encode(),
                               {"Origin": "http://attacker.example"})
        assert status == 403
        assert inv.status == S.REGISTERED
        status, page, final = request(url + "/cancel", "POST", f"token={token}".encode(),
                                      {"Origin": base})
        assert status == 200 and final.startswith(url) and "cancelled" in page
        assert inv.status == S.CANCELLED
        assert "retry (submit again)</button>" in page
        status, page, final = request(url + "/retry", "POST", f"token={quote(token)}".encode())
        assert status == 200
        new_id = final.rsplit("/", 1)[-1].split("?")[0]
        assert new_id != inv.invocation_id and "REGISTERED" in page
        assert f"submitted again as a retry of {inv.invocation_id}" in page
        _, page, _ = request(f"{base}/invocations/{new_id}?notice=Send+your+password")
        assert "password" not in page  # only the actions' own notices are shown
        again = app.backend.get(new_id)
        assert (again.task_id, again.priority) == (inv.task_id, 4)
        status, text, _ = request(f"{base}/invocations/{new_id}/retry", "POST",
                                  f"token={token}".encode())
        assert status == 409 and "not final" in text
        status, _, _ = request(f"{base}/invocations/{new_id}/delete", "POST",
                               f"token={token}".encode())
        assert status == 404


def test_durations_read_as_a_person_would():
    assert [fmt_seconds(s) for s in (None, 0.25, 4.21, 185, 7440)] == [
        "-", "250 ms", "4.2 s", "3 min 5 s", "2 h 4 min"]


def test_the_overview_and_an_invocation_say_what_fired_what(tmp_path):
    from tests.conformance import trigger_tasks as tt

    app = tt.app.reconfigure(replace=True, backend="memory", app_id=unique_app_id("monw"))
    source = tt.add(2, 3)
    run_pending(app)
    [fired] = [r.invocation_id for r in app.backend.recent(0) if r.task_id == tt.after_add.task_id]
    with serving(create_app(app)) as base:
        _, page, _ = request(base + "/fragment/overview")
        assert 'id="fired"' in page and fired in page and source.invocation_id in page
        assert "on_status(tests.conformance.trigger_tasks:add, SUCCESS)" in page
        _, page, _ = request(f"{base}/invocations/{fired}")
        assert 'id="triggered-by"' in page and source.invocation_id in page
        # the state is read from the backend: whatever it holds is escaped, and a
        # source that is not an invocation id is not linked
        cursor, _ = app.backend.trigger_state()
        hostile = {"pending": {}, "cron": {}, "fired": [
            {"id": "<script>", "task": "<b>t</b>", "condition": "<i>c</i>", "by": ["<u>x</u>"],
             "sources": ["javascript:alert(1)"], "at": "soon", "error": "<s>e</s>"}, 42]}
        assert app.backend.save_trigger_state(cursor, cursor, json.dumps(hostile).encode())
        status, page, _ = request(base + "/fragment/overview")
        assert status == 200 and "&lt;b&gt;t&lt;/b&gt;" in page and "<b>t</b>" not in page
        assert "<script>" not in page and "javascript:" not in page and "<u>x" not in page
    tt.app.reconfigure(replace=True)
