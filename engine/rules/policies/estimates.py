"""How long a step is expected to take on an agent: exponentially weighted means.

The `predictive` allocation strategy ranks agents by these estimates. The model
is duration = base(workflow, step) * speed(agent), blended with the exact
(workflow, step, agent) mean as that pair gathers samples (`PRIOR_WEIGHT`):
an agent with its own quirk for a step is learnt, and an unseen pair gets the
step's base scaled by the agent's speed; for a step never seen anywhere, the mean base of
all steps scaled the same way; with no history at all, `default` seconds. So a
slow agent is known to be slow for steps it has never run.

Only successful attempts count: a failed or timed-out attempt says how long it
took to fail, not how long the work takes. Built live with `observe`, or
rebuilt from the log with `from_events` (run id, event) pairs.
"""

from __future__ import annotations

from collections.abc import Iterable

from engine.rules.events import (
    AttemptFailed,
    AttemptStarted,
    Event,
    RunSubmitted,
    StepCancelled,
    StepSucceeded,
)

__all__ = ["MIN_SPEED_SAMPLES", "PRIOR_WEIGHT", "DurationEstimates"]

MIN_SPEED_SAMPLES = 3

PRIOR_WEIGHT = 2.0
"""How many samples of a (step, agent) pair the model's prediction is worth.

The pair's own mean takes over as samples accumulate; with one or two it is
mostly noise, and the model (base x speed) is the better guess.
"""


class DurationEstimates:
    """Mutable, owned by one thread; `estimate` is cheap (a few dict lookups)."""

    def __init__(self, alpha: float = 0.3, speed_alpha: float = 0.1, default: float = 1.0) -> None:
        if not (0 < alpha <= 1 and 0 < speed_alpha <= 1 and default > 0):
            raise ValueError("alpha and speed_alpha must be in (0, 1], default > 0")
        self.alpha, self.speed_alpha, self.default = alpha, speed_alpha, default
        # ("pair", workflow, step, agent) | ("base", workflow, step) | ("speed", agent)
        # | ("global",) -> mean seconds, or for speed a ratio. A base is the step's mean
        # over whichever agents ran it, never divided by a speed: the two estimates
        # feeding each other would drift apart without bound (seen: speeds of 400).
        self._means: dict[tuple[str, ...], float] = {}
        self._counts: dict[tuple[str, ...], int] = {}
        self._workflows: dict[str, str] = {}  # run id -> workflow name
        self._started: dict[tuple[str, str], tuple[str, float]] = {}  # (run, step) -> agent, at

    def estimate(self, workflow: str, step_id: str, agent: str) -> float:
        """Expected seconds for `step_id` of `workflow` on `agent`; always > 0."""
        means = self._means
        base = means.get(("base", workflow, step_id), means.get(("global",), self.default))
        model = base * self.speed(agent)
        key = ("pair", workflow, step_id, agent)
        pair, n = means.get(key), min(self._counts.get(key, 0), round(1 / self.alpha))
        if pair is None:
            return model
        return (n * pair + PRIOR_WEIGHT * model) / (n + PRIOR_WEIGHT)

    def speed(self, agent: str) -> float:
        """How many times longer than usual the agent takes (1.0 when unseen).

        Optimistic until MIN_SPEED_SAMPLES: an agent that looked slow on one
        unlucky step would otherwise never be chosen again, so never measured
        again, and stay "slow" for good.
        """
        speed = self._means.get(("speed", agent), 1.0)
        if self._counts.get(("speed", agent), 0) < MIN_SPEED_SAMPLES:
            return min(speed, 1.0)
        return speed

    def observe(self, workflow: str, step_id: str, agent: str, seconds: float) -> None:
        """Fold one successful attempt's duration into every mean it informs."""
        seconds = max(seconds, 1e-6)  # a zero duration would make ratios meaningless
        expected = self._means.get(("base", workflow, step_id), self._means.get(("global",)))
        if expected is not None:
            self._update(("speed", agent), seconds / expected, self.speed_alpha)
        self._update(("base", workflow, step_id), seconds, self.alpha)
        self._update(("global",), seconds, self.alpha)
        self._update(("pair", workflow, step_id, agent), seconds, self.alpha)

    def _update(self, key: tuple[str, ...], value: float, alpha: float) -> None:
        """A plain mean over the first 1/alpha samples, then exponentially weighted.

        The plain start keeps one unlucky first sample from dominating.
        """
        n = self._counts[key] = self._counts.get(key, 0) + 1
        old = self._means.get(key, value)
        self._means[key] = old + max(alpha, 1 / n) * (value - old)

    def apply(self, run_id: str, event: Event) -> None:
        """Fold one event of run `run_id`'s stream (the stream name gives the run id)."""
        match event:
            case RunSubmitted(spec=spec):
                self._workflows[run_id] = spec.name
            case AttemptStarted(step_id=step_id, agent=agent, at=at):
                self._started[(run_id, step_id)] = (agent, at)
            case StepSucceeded(step_id=step_id, attempt=attempt, at=at) if attempt > 0:
                started = self._started.pop((run_id, step_id), None)
                workflow = self._workflows.get(run_id)
                if started is not None and workflow is not None:
                    self.observe(workflow, step_id, started[0], at - started[1])
            case AttemptFailed(step_id=step_id) | StepCancelled(step_id=step_id):
                self._started.pop((run_id, step_id), None)
            case _:
                pass

    @classmethod
    def from_events(
        cls, records: Iterable[tuple[str, Event]], alpha: float = 0.3, default: float = 1.0
    ) -> DurationEstimates:
        """Estimates from (run id, event) pairs in log order, e.g. every run stream in turn."""
        estimates = cls(alpha=alpha, default=default)
        for run_id, event in records:
            estimates.apply(run_id, event)
        return estimates
