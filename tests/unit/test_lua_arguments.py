"""The Lua entry points' arguments, named once (``backends/redis/arguments.py``):
Python builds each call's ARGV through the declared list, and the Lua reads
exactly the declared names (a typo would read nil there, so this is the
check). On the source, without Redis (the Redis side is in
tests/redis/test_lua_arguments.py)."""

from __future__ import annotations

import re

import pytest

from pynenc_ray.backends.records import NewInvocation
from pynenc_ray.backends.redis.arguments import CALL, SIGNATURES, Finish, Signature
from pynenc_ray.backends.redis.scripts import HERE, NAMES, READS, SHARED, STEPS


def _used(path_name: str, table: str) -> set[str]:
    """The names read as ``<table>.<name>`` in one of the ``.lua`` files."""
    return set(re.findall(rf"\b{table}\.([a-z_]+)", (HERE / f"{path_name}.lua").read_text()))


@pytest.mark.parametrize("name", NAMES)
def test_each_entry_point_reads_exactly_the_arguments_declared_for_it(name):
    used = _used(name, "A")
    if "claim_step" in STEPS.get(name, ()):
        assert "claim_step(A)" in (HERE / f"{name}.lua").read_text()
        used |= _used("claim_step", "c")  # the claim step reads the entry point's A as c
    assert used == SIGNATURES[name].names - {"ttl"}  # ttl: begin() reads it for every one


@pytest.mark.parametrize("path_name, var, entry_point", [
    ("enqueue", "call", "enqueue"), ("finish_step", "item", "finish")])
def test_the_tail_records_are_read_by_their_declared_fields(path_name, var, entry_point):
    assert _used(path_name, var) == set(SIGNATURES[entry_point].fields)


def test_finish_claim_hands_the_finish_step_a_finish_record():
    text = (HERE / "finish_claim.lua").read_text()
    [literal] = re.findall(r"\{\{([^}]*)\}\}", text)
    assert [k.strip().split(" = ")[0] for k in literal.split(",")] == list(Finish._fields)


def test_no_lua_file_reads_argv_or_a_record_by_position():
    for path in HERE.glob("*.lua"):
        text = path.read_text()
        assert "ARGV" not in re.sub(r"--[^\n]*", "", text), path.name
        assert not re.search(r"\b(v|rec)\[\d", text), path.name


def test_each_generated_read_is_used_and_checks_every_field_it_reads():
    lua = "\n".join(p.read_text() for p in HERE.glob("*.lua"))
    assert set(re.findall(r"\bREADS\.([a-z_]+)", lua)) == set(READS)
    checks = (HERE / "records.lua").read_text().split("local FIELD_CHECKS = {")[1].split("\n}")[0]
    checked = set(re.findall(r"\b([a-z_]+) = ", checks))
    assert {f for fields in READS.values() for f in fields} <= checked


def test_every_shared_file_says_first_what_it_holds():
    for name in SHARED:
        first = (HERE / f"{name}.lua").read_text().splitlines()[0]
        assert first.startswith("-- ") and len(first) > 20, name


def test_a_call_is_built_by_name_in_the_declared_order_and_kinds():
    assert CALL.retry(60, id="i", runner="r", worker="w", delay=0.25, push=False) \
        == ("retry", [60, "i", "r", "w", "0.25", "0"])
    # the enqueue sends six of a NewInvocation's fields: queue, priority and due
    # time go once per batch, as arguments
    calls = [NewInvocation("a", "t", b"x", queue="q", priority=3, running_key="k")]
    assert CALL.enqueue(60, runner="r", worker="w", push=True, queue="q", prio=3, delay=None,
                        calls=calls) \
        == ("enqueue", [60, "r", "w", "1", "q", 3, "", "a", "t", b"x", "", "k", ""])
    items = [Finish(id="a", status="SUCCESS", payload=b"p", worker="w")]
    assert CALL.finish(1, runner="r", items=items) \
        == ("finish", [1, "r", "a", "SUCCESS", b"p", "w"])
    assert CALL.reroute(1, owner="o", by="b", worker="w", died=True, fence=False,
                        isolate=True, ids=["x", "y"]) \
        == ("reroute", [1, "o", "b", "w", "1", "0", "1", "x", "y"])


def test_a_missing_or_unknown_argument_is_a_type_error_naming_the_entry_point():
    assert CALL.lease(1, name="n", holder="h", ms=5) == ("lease", [1, "n", "h", 5])
    with pytest.raises(TypeError, match=r"Lua entry point lease\(\) missing 1 required "
                                        r"keyword-only argument: 'ms'"):
        CALL.lease(1, name="n", holder="h")
    with pytest.raises(TypeError, match=r"Lua entry point lease\(\) got an unexpected "
                                        r"keyword argument 'mss'"):
        CALL.lease(1, name="n", holder="h", ms=5, mss=5)
    with pytest.raises(TypeError, match="holds Finish records, not tuple"):
        CALL.finish(1, runner="r", items=[("a", "SUCCESS", b"p", "w")])


def test_every_declared_entry_point_has_a_call_builder():
    assert set(vars(CALL)) == set(SIGNATURES) == set(NAMES)


def test_a_signature_refuses_names_the_generated_lua_cannot_bind():
    with pytest.raises(ValueError, match=r"can bind: \['end', 'Queue', 'from'\]"):
        Signature("x", ("end", "Queue", "from"))
    with pytest.raises(ValueError, match="named twice"):
        Signature("x", ("ids",), tail="ids")


def test_a_tail_may_send_some_fields_of_its_records_but_only_fields_they_have():
    one = Signature("x", (), tail="items", record=Finish, fields=("id",))
    assert one.call(1, items=[Finish("a", "SUCCESS", b"p", "w")]) == ("x", [1, "a"])
    two = Signature("x", (), tail="items", record=Finish, fields=("worker", "id"))
    assert two.call(1, items=[Finish("a", "SUCCESS", b"p", "w")]) == ("x", [1, "w", "a"])
    with pytest.raises(ValueError, match=r"fields \('ids',\) not all of Finish's"):
        Signature("x", (), tail="items", record=Finish, fields=("ids",))
