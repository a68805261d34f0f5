"""The environment of a process an attempt starts.

The engine's own environment, then the attempt's identity as `WFA_*`
variables, then the step's `env:`, which wins on conflicts.
"""

from __future__ import annotations

import os

from actors.execution.attempt import AttemptRequest

__all__ = ["attempt_environment"]


def attempt_environment(request: AttemptRequest, *, outputs_path: str | None) -> dict[str, str]:
    """`os.environ` + `WFA_RUN_ID` ... `WFA_IDEMPOTENCY_KEY` (+ `WFA_OUTPUTS`) + `request.env`."""
    env = dict(os.environ)
    env.update(
        WFA_RUN_ID=request.run_id,
        WFA_STEP_ID=request.step_id,
        WFA_ATTEMPT=str(request.attempt),
        WFA_AGENT=request.agent,
        WFA_IDEMPOTENCY_KEY=request.idempotency_key,
    )
    if outputs_path is not None:
        env["WFA_OUTPUTS"] = outputs_path
    else:
        env.pop("WFA_OUTPUTS", None)  # never inherit a parent step's outputs file
    env.update(request.env)
    return env
