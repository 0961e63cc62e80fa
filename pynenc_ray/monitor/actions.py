"""The two things the monitor can change, only when started with
``--allow-actions``: cancel an invocation, and retry one (submit its task again
with the same arguments). Both go through the public API, as a script would."""

from __future__ import annotations

from ..app import Pynenc
from ..backends.base import Claimed
from ..errors import PynencError


class ActionError(PynencError):
    """An action the monitor did not carry out; the message says why."""


def cancel(app: Pynenc, invocation_id: str) -> bool:
    """Cancel ``invocation_id`` (``app.cancel_invocations``): True when this call
    cancelled it, False when it was final already. Raises ActionError when the
    backend has no record of it, and the backend's errors."""
    if app.backend.status(invocation_id) is None:
        raise ActionError(f"invocation {invocation_id} is not stored (expired or never "
                          "submitted to this app); nothing to cancel")
    return app.cancel_invocations([invocation_id])[0]


def retry(app: Pynenc, invocation_id: str) -> str:
    """Submit the task of the final invocation ``invocation_id`` again with the
    same arguments, queue and priority, as a new invocation; its id. The
    arguments are decoded by the app's serializer under its rules (a pickle
    only with a valid signature, or with ``allow_unsigned_pickle``).

    Raises ActionError when the record is missing, not final yet, its task is
    not registered in this app (start the monitor with ``--app module:app``),
    or its arguments cannot be decoded; and the backend's errors."""
    rec = app.backend.get(invocation_id)
    if rec is None:
        raise ActionError(f"invocation {invocation_id} is not stored (expired or never "
                          "submitted to this app); there is nothing to retry")
    if not rec.status.is_final:
        raise ActionError(f"invocation {invocation_id} is {rec.status}, not final: wait for "
                          "it to end, or cancel it, before submitting it again")
    task = app.tasks.get(rec.task_id)
    if task is None:
        raise ActionError(f"task {rec.task_id} is not registered in app {app.app_id!r} in the "
                          "monitor's process: start the monitor with --app module:app, the "
                          "module that defines the task")
    try:
        args, kwargs = app.decode_args(Claimed(rec.invocation_id, rec.task_id, rec.args, 0, 0))
    except PynencError as exc:
        raise ActionError(f"the arguments of invocation {invocation_id} cannot be decoded "
                          f"here: {exc}") from None
    return task.with_options(queue=rec.queue, priority=rec.priority)(*args, **kwargs
                                                                      ).invocation_id
