"""The throwaway redis-server that `pynenc-ray bench` and the examples start when
no Redis is configured: it starts, it is stopped, and when it cannot start it
says so instead of handing out the URL of whatever holds the port."""

from __future__ import annotations

import socket

import pytest
import redis

from pynenc_ray import local_redis

pytestmark = [pytest.mark.redis, pytest.mark.timeout(60)]


def test_a_throwaway_redis_answers_and_is_gone_after_the_block():
    with local_redis.throwaway_redis() as url:
        client = redis.Redis.from_url(url, socket_timeout=5)
        assert client.ping()
    with pytest.raises(redis.ConnectionError):
        client.ping()


def test_a_taken_port_is_a_clear_error_not_another_servers_url(monkeypatch):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        monkeypatch.setattr(local_redis, "free_port", lambda: taken.getsockname()[1])
        with pytest.raises(SystemExit, match="did not start"), local_redis.throwaway_redis():
            pytest.fail("yielded a URL where no redis-server of its own runs")


def test_a_test_server_on_a_taken_port_raises_and_leaves_no_process(monkeypatch):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        monkeypatch.setattr(local_redis, "free_port", lambda: taken.getsockname()[1])
        server = local_redis.RedisServer()
        with pytest.raises(RuntimeError, match="did not start"):
            server.start()
        assert server.proc is None
        server.stop()


def test_a_port_another_redis_server_holds_is_an_error_not_its_url(monkeypatch):
    with local_redis.throwaway_redis() as url:
        other = redis.Redis.from_url(url)
        port = other.connection_pool.connection_kwargs["port"]
        monkeypatch.setattr(local_redis, "free_port", lambda: port)
        server = local_redis.RedisServer()
        with pytest.raises(RuntimeError, match="did not start"):
            server.start()
        server.stop()
        assert other.ping()  # the other server was left alone
