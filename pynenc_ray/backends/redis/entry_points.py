"""How the backend calls its Lua entry points (built in ``scripts.py``): FCALL
of the function library, or EVALSHA of standalone scripts where the server
refuses to load functions.

Functions are the default because the shared code then runs once, when the
library is loaded, not on every call. A server that answers ``FUNCTION LOAD``
with NOPERM (an ACL without ``@scripting`` function commands) or as an unknown
command (a proxy) gets scripts for the life of the backend; the code they run
is the same.

A server can lose what was loaded: a restart without persistence, ``FUNCTION
FLUSH``, ``SCRIPT FLUSH``, a failover to a replica that never had it. The call
then fails with "Function not found" or NOSCRIPT before running anything, so
``reload_if_missing`` loads the code again and the caller sends the same call
once more.
"""

from __future__ import annotations

import logging

import redis

from .scripts import NAMES, library, source

log = logging.getLogger("pynenc_ray.backends.redis")

# error replies (as redis-py words them: no "ERR ") that mean "this server will
# not load functions", not a passing fault; NOPERM is a NoPermissionError
_REFUSED = ("unknown command", "unknown subcommand")


class LuaEntryPoints:
    """How each entry point is called (``heads``), and (re)loading their code."""

    def __init__(self, client: redis.Redis):
        self.client = client
        self.library, self._code, self._functions = library()
        # registered for their sha only: nothing is sent until a script is missing
        self._scripts = {name: client.register_script(source(name)) for name in NAMES}
        self.use_functions = True  # until the server refuses them
        # what each call starts with; then 1 (one key), the app's prefix, the TTL, its args
        self.heads: dict[str, tuple[str, str]] = {
            name: ("FCALL", fn) for name, fn in self._functions.items()}

    def load(self) -> None:
        """Load the function library (a no-op reply when it is there already);
        on a server that refuses functions, switch to scripts for good."""
        if not self.use_functions:
            return
        try:
            self.client.function_load(self._code)
        except redis.ResponseError as exc:
            msg = str(exc)
            if "already exists" in msg:
                return
            if not (isinstance(exc, redis.exceptions.NoPermissionError)
                    or msg.startswith(_REFUSED)):
                raise
            self.use_functions = False
            self.heads = {name: ("EVALSHA", script.sha) for name, script in self._scripts.items()}
            log.info("Redis refused to load the function library %s (%s); calling the same "
                     "code as scripts (EVALSHA) instead", self.library, msg)

    def reload_if_missing(self, exc: redis.ResponseError, name: str) -> bool:
        """Whether ``exc`` says the server lacks the code of ``name``; if so it is
        loaded again, and the same call may be sent once more (nothing ran)."""
        if isinstance(exc, redis.exceptions.NoScriptError):
            script = self._scripts[name]
            script.sha = self.client.script_load(script.script)
            return True
        if str(exc).startswith("Function not found"):
            log.warning("Redis no longer has the function library %s (restarted or "
                        "flushed?); loading it again", self.library)
            self.load()
            return True
        return False
