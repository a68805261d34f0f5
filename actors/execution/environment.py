"""The environment of a process an attempt starts.

The engine's own environment (all of it, or with `execution.step_env.inherit:
false` only the names in `pass`), then the step's `env:`, then the attempt's
identity as `WFA_*` variables, which nothing overrides (validation refuses an
`env:` that sets one).
"""

from __future__ import annotations

import os

from actors.execution.attempt import AttemptRequest

__all__ = ["attempt_environment"]


def attempt_environment(request: AttemptRequest, *, outputs_path: str | None) -> dict[str, str]:
    """The engine's environment (or its `request.env_pass` names) + `request.env` + `WFA_*`."""
    if request.env_pass is None:
        env = dict(os.environ)
    else:
        env = {name: os.environ[name] for name in request.env_pass if name in os.environ}
    env.update(request.env)
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
    return env
