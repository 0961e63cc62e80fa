"""The invocation state machine in pynenc_ray.status: table, ownership, late finals."""

from __future__ import annotations

import pytest

from pynenc_ray.errors import InvocationOwnershipError, InvocationStatusTransitionError
from pynenc_ray.status import (
    FINAL,
    OWNED,
    TRANSITIONS,
    InvocationStatus,
    Verdict,
    check_transition,
)

S = InvocationStatus

EXPECTED_TABLE = {
    S.REGISTERED: {S.PENDING, S.CANCELLED},
    S.PENDING: {S.RUNNING, S.REROUTED, S.FAILED, S.CANCELLED},
    S.RUNNING: {S.SUCCESS, S.FAILED, S.RETRY, S.PAUSED, S.REROUTED, S.CANCELLED},
    S.PAUSED: {S.RUNNING, S.REROUTED, S.CANCELLED},
    S.RETRY: {S.REGISTERED, S.CANCELLED},
    S.REROUTED: {S.PENDING, S.CANCELLED},
    S.SUCCESS: set(),
    S.FAILED: set(),
    S.CANCELLED: set(),
}
RUNNER_FINALS = sorted(FINAL - {S.CANCELLED})  # the finals a runner writes (not cancellation)
ALLOWED = [(cur, new) for cur, nexts in EXPECTED_TABLE.items() for new in sorted(nexts)]


def test_table_matches_the_design():
    assert {k: set(v) for k, v in TRANSITIONS.items()} == EXPECTED_TABLE
    assert {S.PENDING, S.RUNNING, S.PAUSED} == OWNED
    assert {S.SUCCESS, S.FAILED, S.CANCELLED} == FINAL


@pytest.mark.parametrize("current", [s for s in S if s not in FINAL], ids=str)
def test_anyone_may_cancel_what_is_not_final_and_the_owner_s_late_final_is_dropped(current):
    owner = "r1" if current in OWNED else None
    assert check_transition("i", current, S.CANCELLED, owner=owner, actor="someone") \
        is Verdict.APPLY
    assert check_transition("i", S.CANCELLED, S.SUCCESS, owner=None, actor="r1") is Verdict.DROP


@pytest.mark.parametrize(("current", "new"), ALLOWED, ids=lambda s: str(s))
def test_every_allowed_transition_applies_for_the_owner(current, new):
    assert check_transition("inv", current, new, owner="r1", actor="r1") is Verdict.APPLY


@pytest.mark.parametrize(("current", "new"), [
    (S.REGISTERED, S.RUNNING),
    (S.REGISTERED, S.REROUTED),
    (S.PENDING, S.SUCCESS),
    (S.PENDING, S.RETRY),
    (S.PENDING, S.PAUSED),
    (S.RUNNING, S.PENDING),
    (S.RUNNING, S.REGISTERED),
    (S.PAUSED, S.SUCCESS),
    (S.PAUSED, S.RETRY),
    (S.RETRY, S.PENDING),
    (S.RETRY, S.RUNNING),
    (S.REROUTED, S.RUNNING),
    (S.REROUTED, S.REGISTERED),
], ids=lambda s: str(s))
def test_disallowed_transitions_raise(current, new):
    owner = "r1" if current in OWNED else None
    with pytest.raises(InvocationStatusTransitionError) as info:
        check_transition("inv-7", current, new, owner=owner, actor="r1")
    assert "inv-7" in str(info.value)
    assert f"{current} -> {new}" in str(info.value)


@pytest.mark.parametrize("final", sorted(FINAL))
@pytest.mark.parametrize("new", list(S))
def test_finals_have_no_successors(final, new):
    assert TRANSITIONS[final] == frozenset()
    if new in FINAL:  # a second final write is a late one: dropped, never applied
        assert check_transition("inv", final, new, owner=None, actor="r1") is Verdict.DROP
    else:
        with pytest.raises(InvocationStatusTransitionError):
            check_transition("inv", final, new, owner=None, actor="r1")


@pytest.mark.parametrize(("current", "new"), [
    (S.PENDING, S.RUNNING),
    (S.PENDING, S.REROUTED),
    (S.RUNNING, S.RETRY),
    (S.RUNNING, S.PAUSED),
    (S.RUNNING, S.REROUTED),
    (S.PAUSED, S.RUNNING),
    (S.PAUSED, S.REROUTED),
], ids=lambda s: str(s))
def test_non_owner_may_not_move_an_owned_invocation(current, new):
    with pytest.raises(InvocationOwnershipError) as info:
        check_transition("inv-9", current, new, owner="r1", actor="intruder")
    message = str(info.value)
    assert "inv-9" in message and "'r1'" in message and "'intruder'" in message


@pytest.mark.parametrize("current", sorted(OWNED))
@pytest.mark.parametrize("final", RUNNER_FINALS)
def test_non_owner_final_write_is_dropped(current, final):
    assert check_transition("inv", current, final, owner="r1", actor="late") is Verdict.DROP


@pytest.mark.parametrize("current", [S.REGISTERED, S.REROUTED, S.RETRY])
@pytest.mark.parametrize("final", RUNNER_FINALS)
def test_final_write_after_reroute_is_dropped(current, final):
    # the former owner finishing late after its invocation was taken back
    assert check_transition("inv", current, final, owner=None, actor="former") is Verdict.DROP


@pytest.mark.parametrize("current", sorted(OWNED))
def test_recovery_may_reroute_an_owned_invocation(current):
    verdict = check_transition("inv", current, S.REROUTED, owner="dead", actor="rescuer",
                               recovery=True)
    assert verdict is Verdict.APPLY


def test_recovery_allows_only_rerouting():
    with pytest.raises(InvocationOwnershipError):
        check_transition("inv", S.RUNNING, S.RETRY, owner="dead", actor="rescuer", recovery=True)
    with pytest.raises(InvocationStatusTransitionError):
        check_transition("inv", S.REGISTERED, S.REROUTED, owner=None, actor="rescuer",
                         recovery=True)


@pytest.mark.parametrize(("current", "new"), [
    (S.REGISTERED, S.PENDING), (S.RETRY, S.REGISTERED), (S.REROUTED, S.PENDING),
], ids=lambda s: str(s))
def test_unowned_statuses_may_be_moved_by_anyone(current, new):
    assert check_transition("inv", current, new, owner=None, actor="anyone") is Verdict.APPLY


def test_status_is_a_str_enum():
    assert S.SUCCESS == "SUCCESS" and S.SUCCESS.is_final and not S.RUNNING.is_final
