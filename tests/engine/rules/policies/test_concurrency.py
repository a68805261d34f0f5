"""Concurrency keys: the pure admission rule and the key a run renders from its inputs."""

from __future__ import annotations

from collections import Counter

from hypothesis import given
from hypothesis import strategies as st

from engine.rules.policies.concurrency import Candidate, ConcurrencyKey, admissible, concurrency_key
from engine.rules.spec import ConcurrencySpec
from tests.strategies import step, workflow


def key(value: str, limit: int = 1, workflow_name: str = "w") -> ConcurrencyKey:
    return ConcurrencyKey(workflow_name, value, limit, f"customer={value}")


def test_the_key_renders_from_the_inputs_and_names_the_input() -> None:
    spec = workflow(
        step("a"),
        inputs={"customer": "default-co"},
        concurrency=ConcurrencySpec(key="${{ inputs.customer }}", limit=2),
    )
    assert concurrency_key(spec, {"customer": "acme"}) == ConcurrencyKey(
        spec.name, "acme", 2, "customer=acme"
    )
    assert concurrency_key(spec, {}) is not None
    assert concurrency_key(spec, {}).label == "customer=default-co"  # type: ignore[union-attr]


def test_a_key_built_from_several_parts_is_labelled_key() -> None:
    spec = workflow(
        step("a"), concurrency=ConcurrencySpec(key="${{ inputs.region }}-${{ inputs.tier }}")
    )
    found = concurrency_key(spec, {"region": "eu", "tier": 1})
    assert found is not None and found.label == "key=eu-1" and found.limit == 1


def test_a_workflow_without_concurrency_has_no_key() -> None:
    assert concurrency_key(workflow(step("a")), {"customer": "acme"}) is None


def test_a_full_key_is_passed_over_and_other_keys_go_on_in_order() -> None:
    queue = [Candidate("r1", key("acme")), Candidate("r2", key("other")), Candidate("r3")]
    assert admissible(queue, [key("acme")], free=10) == ["r2", "r3"]


def test_runs_of_one_key_start_in_queue_order_up_to_the_limit() -> None:
    queue = [Candidate(f"r{i}", key("acme", limit=2)) for i in range(5)]
    assert admissible(queue, [], free=10) == ["r0", "r1"]


def test_runs_that_had_started_come_first_and_hold_their_slots() -> None:
    queue = [Candidate("queued", key("acme")), Candidate("started", key("acme"), started=True)]
    assert admissible(queue, [], free=10) == ["started"]


def test_the_same_key_value_of_another_workflow_is_another_key() -> None:
    queue = [Candidate("r2", key("acme", workflow_name="other-wf"))]
    assert admissible(queue, [key("acme")], free=1) == ["r2"]


def test_no_more_than_free_slots_are_taken() -> None:
    queue = [Candidate(f"r{i}") for i in range(5)]
    assert admissible(queue, [], free=2) == ["r0", "r1"]


candidates = st.lists(
    st.builds(
        Candidate,
        run_id=st.just(""),
        key=st.one_of(
            st.none(),
            st.builds(key, st.sampled_from(["a", "b", "c"]), st.just(2)),
        ),
        started=st.booleans(),
    ),
    max_size=20,
)


@given(
    queue=candidates,
    running=st.lists(st.sampled_from(["a", "b", "c"]), max_size=2),
    free=st.integers(0, 25),
)
def test_admission_keeps_each_key_within_its_limit_keeps_order_and_starves_nobody(
    queue: list[Candidate], running: list[str], free: int
) -> None:
    queue = [Candidate(f"r{i}", c.key, c.started) for i, c in enumerate(queue)]
    chosen = admissible(queue, [key(v, 2) for v in running], free)
    by_id = {c.run_id: c for c in queue}
    assert len(chosen) <= free and len(set(chosen)) == len(chosen)
    started = [r for r in chosen if by_id[r].started]
    assert chosen[: len(started)] == started  # runs that had started come first
    for part in (started, chosen[len(started) :]):
        assert part == sorted(part, key=lambda r: int(r[1:]))  # then queue order
    counts = Counter(running)
    for r in chosen:
        k = by_id[r].key
        if k is not None:
            assert by_id[r].started or counts[k.value] < k.limit  # a new run needs a free slot
            counts[k.value] += 1
    if len(chosen) < free:  # every run passed over is held by its full key
        for c in queue:
            if c.run_id not in chosen:
                assert c.key is not None and not c.started and counts[c.key.value] >= 2
