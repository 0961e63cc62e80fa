"""A process that writes to a SQLite backend as fast as it can, for the test that
SIGKILLs it: each invocation is stored, claimed and finished, and its id printed
once ``finish`` returned (acknowledged). Usage: writer.py PATH APP_ID"""

from __future__ import annotations

import sys
import uuid

from pynenc_ray.backends.records import NewInvocation
from pynenc_ray.backends.sqlite.backend import SQLiteBackend
from pynenc_ray.status import InvocationStatus


def main(path: str, app_id: str) -> None:
    backend = SQLiteBackend(path, app_id)
    while True:
        inv_id = uuid.uuid4().hex
        backend.enqueue([NewInvocation(inv_id, "t.task", b"[]")], "writer", "w")
        (claimed,) = backend.claim("writer", "w", 1, 1.0, start=True)
        assert backend.finish(claimed.invocation_id, InvocationStatus.SUCCESS, b"42", "writer",
                              "w")
        print(inv_id, flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
