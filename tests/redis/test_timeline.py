"""The timeline CLI on the Redis backend (moved from tests/unit so that unit
tests need no redis-server)."""

from __future__ import annotations

import pytest

from pynenc_ray.cli import main
from tests.conformance import tasks
from tests.conftest import running, unique_app_id

pytestmark = pytest.mark.redis


def test_cli_writes_svg_and_html(redis_url, tmp_path, capsys):
    tasks.app.reconfigure(replace=True, backend="redis", redis_url=redis_url,
                          app_id=unique_app_id("tlr"), runner={"max_threads": 2})
    with running(tasks.app):
        assert list(tasks.add.parallelize([(1, 1)] * 4).results) == [2] * 4
    for name in ("t.svg", "t.html"):
        out = tmp_path / name
        assert main(["--app", "tests.conformance.tasks:app", "timeline", "--out", str(out)]) == 0
        text = out.read_text()
        assert text.count('class="bar success"') == 4
        assert "http" not in text.replace("http://www.w3.org/2000/svg", "")  # self-contained
    assert "wrote" in capsys.readouterr().out
