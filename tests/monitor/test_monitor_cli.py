"""``pynenc-ray monitor``: its options, the message when the extra is missing,
and the real command serving a Redis app on loopback until SIGINT."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from pynenc_ray.cli import build_parser, main
from pynenc_ray.monitor import cli as monitor_cli
from pynenc_ray.testing import free_port, wait_for
from tests.conformance import tasks
from tests.conftest import running, unique_app_id
from tests.monitor.serving import request

REPO = Path(__file__).resolve().parents[2]


def test_monitor_options_default_to_loopback_and_read_only():
    args = build_parser().parse_args(["monitor"])
    assert (args.host, args.port, args.allow_actions, args.refresh) == (
        "127.0.0.1", 8765, False, 3.0)
    args = build_parser().parse_args(["monitor", "--host", "::1", "--port", "9000",
                                      "--allow-actions", "--refresh", "0"])
    assert (args.host, args.port, args.allow_actions, args.refresh) == ("::1", 9000, True, 0.0)


def test_without_the_extra_the_command_says_what_to_install(monkeypatch, capsys):
    monkeypatch.setattr(monitor_cli, "missing_packages", lambda: ["starlette", "uvicorn"])
    assert main(["monitor"]) == 2
    err = capsys.readouterr().err
    assert 'pip install "pynenc-ray[monitor]"' in err and "starlette, uvicorn" in err


def test_a_port_out_of_range_is_refused(capsys):
    assert main(["monitor", "--port", "70000"]) == 2
    assert "0 to 65535" in capsys.readouterr().err


@pytest.mark.parametrize("host, local", [("127.0.0.1", True), ("127.3.0.1", True),
                                         ("localhost", True), ("::1", True), ("[::1]", True),
                                         ("0.0.0.0", False), ("192.168.1.5", False),
                                         ("example.org", False)])
def test_loopback_hosts_are_told_apart(host, local):
    assert monitor_cli.is_loopback(host) is local


@pytest.mark.redis
@pytest.mark.timeout(120)
def test_the_command_serves_a_redis_app_until_interrupted(redis_url, tmp_path):
    app_id = unique_app_id("monc")
    tasks.app.reconfigure(replace=True, backend="redis", redis_url=redis_url, app_id=app_id)
    with running(tasks.app):
        assert tasks.add(20, 22).get(timeout=30) == 42
    port = free_port()
    env = {**os.environ, "PYNENC__BACKEND": "redis", "PYNENC__REDIS_URL": redis_url,
           "PYNENC__APP_ID": app_id}
    out = (tmp_path / "out.txt").open("w")
    proc = subprocess.Popen([sys.executable, "-m", "pynenc_ray", "--app",
                             "tests.conformance.tasks:app", "monitor", "--port", str(port)],
                            cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        base = f"http://127.0.0.1:{port}"

        def up() -> bool:
            try:
                return request(base + "/")[0] == 200
            except OSError:
                return False
        assert wait_for(up, 60, interval=0.1), (tmp_path / "out.txt").read_text()
        status, page, _ = request(base + "/?task=add")
        assert status == 200 and app_id in page and "read-only" in page
        assert page.count('class="inv status-success"') == 1
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(20)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
    text = (tmp_path / "out.txt").read_text()
    assert proc.returncode == 0, text
    assert f"http://127.0.0.1:{port}/ (read-only)" in text


def test_the_host_names_a_monitor_answers_to():
    """Never any name with actions on: a page that answers any Host can be driven
    by another site through DNS rebinding."""
    from pynenc_ray import ConfigError

    loop = ("127.0.0.1", "localhost", "::1")
    assert monitor_cli.host_names("127.0.0.1", [], True, loop) == loop
    assert monitor_cli.host_names("10.1.2.3", ["mon.example"], True, loop) == (
        *loop, "10.1.2.3", "mon.example")
    assert monitor_cli.host_names("0.0.0.0", ["mon.example"], True, loop) == (*loop, "mon.example")
    assert monitor_cli.host_names("0.0.0.0", [], False, loop) == ("*",)  # read-only, warned
    with pytest.raises(ConfigError, match="--allowed-host"):
        monitor_cli.host_names("0.0.0.0", [], True, loop)
