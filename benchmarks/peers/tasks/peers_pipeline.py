"""The bare pipeline the issue measured as "how far it can go here": a task
queue's shape with none of a task queue's bookkeeping. Used by producer.py
(``pipeline``) and run as its worker (``python peers_pipeline.py``).

- submit: one EVALSHA per call on a held connection (hiredis packing): HSET the
  call, RPUSH "<id> <args>" to the queue;
- worker: one process; one BLMPOP takes up to 64 queued calls (blocking only
  when the queue is empty), runs them, and one EVALSHA stores every result and
  PUBLISHes them all in one message;
- result: the producer's listener thread keeps what it heard; reading a result
  is a dict lookup.

No status, no history, no ownership, no retries, no recovery: a worker killed
mid-batch loses its batch. It is the most a Redis task queue of this shape
could do on this machine, not something to use.
"""

from __future__ import annotations

import json
import os
import signal
import threading

import redis
from hiredis import pack_command

QUEUE, FINAL, CALL = "pipeline:queue", "pipeline:final", "pipeline:call:"
BATCH = 64

SUBMIT_LUA = """
redis.call('HSET', KEYS[1], 'args', ARGV[2])
return redis.call('RPUSH', KEYS[2], ARGV[1] .. ' ' .. ARGV[2])
"""

FINISH_LUA = """
local lines = {}
for i = 1, #ARGV, 2 do
  redis.call('HSET', KEYS[1] .. ARGV[i], 'result', ARGV[i + 1])
  lines[#lines + 1] = ARGV[i] .. ' ' .. ARGV[i + 1]
end
redis.call('PUBLISH', KEYS[2], table.concat(lines, '\\n'))
"""


class Producer:
    """Submits on a held connection; a listener thread keeps the results it hears."""

    def __init__(self, url: str) -> None:
        self.client = redis.Redis.from_url(url)
        self.sha = self.client.script_load(SUBMIT_LUA)
        self.conn = self.client.connection_pool.get_connection()
        self.results: dict[str, int] = {}
        self.cv = threading.Condition()
        self.pubsub = self.client.pubsub()
        self.pubsub.subscribe(FINAL)
        while (m := self.pubsub.get_message(timeout=5)) is None or m["type"] != "subscribe":
            pass
        threading.Thread(target=self._listen, daemon=True).start()

    def _listen(self) -> None:
        try:
            for msg in self.pubsub.listen():
                if msg["type"] == "message":
                    self._heard(msg["data"])
        except (redis.ConnectionError, OSError, ValueError):
            return  # closed

    def _heard(self, data: bytes) -> None:
        heard = dict(line.split(b" ", 1) for line in data.split(b"\n"))
        with self.cv:
            self.results.update((k.decode(), int(v)) for k, v in heard.items())
            self.cv.notify_all()

    def submit(self, i: int) -> str:
        """Store and queue add(i, i); its id once Redis confirmed it."""
        call_id = os.urandom(16).hex()
        self.conn.send_packed_command([pack_command(
            ("EVALSHA", self.sha, 2, CALL + call_id, QUEUE, call_id, json.dumps([i, i])))])
        self.conn.read_response()
        return call_id

    def read(self, call_id: str) -> int:
        """The result the listener heard for ``call_id`` (waits for it)."""
        with self.cv:
            while call_id not in self.results:
                self.cv.wait(10)
            return self.results.pop(call_id)

    def close(self) -> None:
        """Unsubscribe and disconnect."""
        self.pubsub.close()
        self.client.connection_pool.release(self.conn)
        self.client.close()


def worker(url: str) -> None:
    """Take up to BATCH queued calls per BLMPOP, run them, store and announce the
    results in one script; until SIGTERM."""
    client = redis.Redis.from_url(url)
    sha = client.script_load(FINISH_LUA)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    while not stop.is_set():
        got = client.blmpop(1, 1, QUEUE, direction="LEFT", count=BATCH)
        if not got:
            continue
        out: list[object] = []
        for item in got[1]:
            call_id, args = item.split(b" ", 1)
            a, b = json.loads(args)
            out += [call_id, a + b]
        client.evalsha(sha, 2, CALL, FINAL, *out)
    client.close()


if __name__ == "__main__":
    worker(os.environ["PEERS_REDIS_URL"])
