"""Triggers: run a task when something occurs.

``@app.task(trigger=on_status(other, [InvocationStatus.SUCCESS]) | on_event("paid"))``
submits a call of the task for each occurrence that satisfies the condition,
once across all runners; ``trigger_args`` says what the call's arguments are
(``context.py``). Conditions are in ``conditions.py``; how they are fired, and
why exactly once, in ``engine.py``.
"""

from .conditions import (
    DEFAULT_WITHIN_SEC,
    AllOf,
    AnyOf,
    Condition,
    on_cron,
    on_event,
    on_exception,
    on_result,
    on_status,
)
from .context import Hit, TriggerContext

__all__ = ["DEFAULT_WITHIN_SEC", "AllOf", "AnyOf", "Condition", "Hit", "TriggerContext",
           "on_cron", "on_event", "on_exception", "on_result", "on_status"]
