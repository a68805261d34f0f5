"""The state machine's side of concurrency keys and rate limits: what a run says it waits
for, folded from the log like every other wait."""

from __future__ import annotations

from engine.rules.decide import ResourcesRefused
from engine.rules.events import StepWaitingForResources
from engine.rules.spec import ConcurrencySpec, RateLimitSpec
from engine.rules.state import RunStatus, StepStatus, fold
from tests.strategies import Sim, step, workflow

KEYED = workflow(
    step("a"),
    inputs={"customer": "default-co"},
    concurrency=ConcurrencySpec(key="${{ inputs.customer }}", limit=1),
)
RATED = workflow(step("api", rate_limit=RateLimitSpec(max=1, per=60)))


def test_a_queued_run_with_a_concurrency_key_waits_for_that_key() -> None:
    sim = Sim(KEYED, inputs={"customer": "acme"})
    assert [str(w) for w in sim.state.waiting_for()] == ["concurrency key customer=acme"]
    sim.start()
    assert sim.state.status is RunStatus.RUNNING
    assert "concurrency" not in " ".join(str(w) for w in sim.state.waiting_for())


def test_a_queued_run_without_a_key_waits_for_admission() -> None:
    assert [str(w) for w in Sim(RATED).state.waiting_for()] == ["admission"]


def test_a_step_refused_by_a_rate_limit_waits_for_that_limit_and_the_fold_agrees() -> None:
    sim = Sim(RATED)
    sim.start()
    reason = "rate limit of random.api: at most 1 starts per 60s"
    out = sim.do(ResourcesRefused(step_id="api", reason=reason))
    assert out == [StepWaitingForResources(at=sim.now, step_id="api", reason=reason)]
    assert [str(w) for w in sim.state.waiting_for()] == ["rate limit of random.api of api"]
    assert [str(w) for w in fold(sim.events).waiting_for()] == ["rate limit of random.api of api"]
    sim.assign("api")
    assert sim.status("api") is StepStatus.RUNNING


def test_a_step_held_by_a_cap_still_waits_for_resources() -> None:
    sim = Sim(RATED)
    sim.start()
    sim.do(ResourcesRefused(step_id="api", reason="held back by the cpu cap: cpu 90%"))
    assert [str(w) for w in sim.state.waiting_for()] == ["resources of api"]
