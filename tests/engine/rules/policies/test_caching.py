"""Cache keys are stable and sensitive to what matters; the index honours TTL and clears."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from engine.rules.events import CacheCleared, CacheEntryStored
from engine.rules.policies.caching import CacheIndex, cache_entry, cache_key, steps_read
from engine.rules.spec import CacheSpec, StepSpec

STEP = StepSpec(id="build", run=("make", "${{ inputs.target }}"), cache=CacheSpec(ttl=60))
BASE: dict[str, Any] = {
    "workflow": "wf",
    "step": STEP,
    "action": ["make", "all"],
    "params": {"lang": "python", "opts": {"a": 1, "b": [1, 2]}},
    "inputs": {"target": "all", "branch": "main"},
    "upstream_outputs": {"design": {"spec": "v1"}},
}

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner),
    max_leaves=8,
)


def reversed_dicts(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: reversed_dicts(value[k]) for k in reversed(list(value))}
    if isinstance(value, list):
        return [reversed_dicts(v) for v in value]
    return value


def test_the_same_call_gives_the_same_key_as_hex_sha256() -> None:
    key = cache_key(**BASE)
    assert key == cache_key(**BASE) and len(key) == 64 and int(key, 16) >= 0


@given(st.dictionaries(st.text(max_size=4), json_values, max_size=5))
def test_dict_order_never_changes_the_key(params: dict[str, Any]) -> None:
    fields = {**BASE, "params": params, "inputs": {"x": params}}
    reordered = {
        **fields,
        "params": reversed_dicts(params),
        "inputs": {"x": reversed_dicts(params)},
    }
    assert cache_key(**fields) == cache_key(**reordered)


def test_any_relevant_change_gives_a_different_key() -> None:
    changes: list[dict[str, Any]] = [
        {"workflow": "other"},
        {"step": StepSpec(id="build2", run=STEP.run)},
        {"step": StepSpec(id="build", run=STEP.run, env={"CC": "clang"})},
        {"action": ["make", "test"]},
        {"action": "pkg.mod:build"},
        {"params": {**BASE["params"], "lang": "go"}},
        {"params": {**BASE["params"], "opts": {"a": 1.0, "b": [1, 2]}}},  # 1 vs 1.0
        {"inputs": {**BASE["inputs"], "branch": "dev"}},
        {"inputs": {**BASE["inputs"], "extra": None}},
        {"upstream_outputs": {"design": {"spec": "v2"}}},
        {"upstream_outputs": {}},
        {"item": 3},
    ]
    keys = {cache_key(**{**BASE, **change}) for change in changes} | {cache_key(**BASE)}
    assert len(keys) == len(changes) + 1


def test_a_step_reads_its_dependencies_and_the_steps_its_expressions_name() -> None:
    step = StepSpec(
        id="gate",
        run=("check", "${{ steps.api.outputs.url }}"),
        env={"TOKEN": '${{ steps["auth-1"].outputs.token }}'},
        params={"nested": ["${{ steps.docs.outputs.path }}"]},
        when="steps.ui.status == 'succeeded' && 'steps.quoted' != ''",
        after=("design",),
    )
    assert steps_read(step, ["design", "prev"]) == ("api", "auth-1", "design", "docs", "prev", "ui")


def entry(key: str, at: float, ttl: float, run_id: str = "r1") -> CacheEntryStored:
    return cache_entry(key, {"out": run_id}, run_id, "build", ttl, at)


def test_lookup_honours_the_ttl() -> None:
    index = CacheIndex.from_events([entry("k", at=100.0, ttl=60.0)])
    assert index.lookup("k", 100.0) == ({"out": "r1"}, "r1")
    assert index.lookup("k", 159.999) == ({"out": "r1"}, "r1")
    assert index.lookup("k", 160.0) is None
    assert index.lookup("other", 100.0) is None


def test_the_newest_entry_for_a_key_wins_and_clear_forgets_everything_before_it() -> None:
    index = CacheIndex.from_events(
        [entry("k", 0.0, 10.0, "r1"), entry("k", 5.0, 10.0, "r2"), entry("j", 5.0, 10.0)]
    )
    assert index.lookup("k", 12.0) == ({"out": "r2"}, "r2")
    index.apply(CacheCleared(at=6.0))
    assert index.lookup("k", 7.0) is None and index.lookup("j", 7.0) is None
    index.apply(entry("k", 8.0, 10.0, "r3"))
    assert index.lookup("k", 9.0) == ({"out": "r3"}, "r3")


def test_prune_drops_expired_entries_from_memory() -> None:
    index = CacheIndex.from_events([entry("a", 0.0, 5.0), entry("b", 0.0, 50.0)])
    assert index.prune(10.0) == 1 and len(index) == 1 and index.lookup("b", 10.0) is not None
