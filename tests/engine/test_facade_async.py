"""The async face of the Engine: `submit_async` and `wait_async` inside a running loop."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

from engine import Engine, RunResult, ValidationError
from engine.input.loading import workflow_from_data
from engine.rules.config import EngineConfig, ExecutionConfig, ResourcesConfig
from engine.rules.spec import WorkflowSpec

PY = sys.executable


def config() -> EngineConfig:
    return EngineConfig(
        execution=ExecutionConfig(default_timeout=30.0, default_retry_count=0),
        resources=ResourcesConfig(agent_pool_size=2),
    )


def waits_for(go: Path) -> WorkflowSpec:
    """A run whose only step ends once `go` exists (or fails after its 20 s timeout)."""
    code = f"import os, time\nwhile not os.path.exists({str(go)!r}): time.sleep(0.02)\n"
    step = {"id": "gated", "run": [PY, "-c", code], "timeout": 20}
    return workflow_from_data({"name": "async", "steps": [step]})


def test_wait_async_lets_the_loop_run_and_returns_what_wait_returns(tmp_path: Path) -> None:
    go = tmp_path / "go"

    async def main(engine: Engine) -> tuple[str, RunResult, int]:
        handle = await engine.submit_async(waits_for(go), {})
        ticks = 0

        async def ticker() -> None:  # the step can only end if this runs during the wait
            nonlocal ticks
            while True:
                ticks += 1
                if ticks == 20:
                    go.write_text("")
                await asyncio.sleep(0.01)

        ticking = asyncio.create_task(ticker())
        result = await handle.wait_async(timeout=60)
        ticking.cancel()
        return handle.id, result, ticks

    with Engine(data_dir=tmp_path / "wfa", config=config()) as engine:
        run_id, result, ticks = asyncio.run(main(engine))
        assert result.status == "succeeded", result
        assert ticks >= 20
        assert result == engine.handle(run_id).wait(timeout=5)


def test_wait_async_returns_a_run_waiting_for_approval_like_wait(tmp_path: Path) -> None:
    spec = workflow_from_data({"name": "gate", "steps": [{"id": "gate", "approval": True}]})
    with Engine(data_dir=tmp_path / "wfa", config=config()) as engine:

        async def main() -> RunResult:
            handle = await engine.submit_async(spec)
            return await handle.wait_async(timeout=60)

        result = asyncio.run(main())
        assert result.needs_intervention and result.status != "succeeded"
        assert result == engine.handle(result.run_id).wait(timeout=5)


def test_wait_async_times_out_with_timeout_error_and_leaves_no_waiter(tmp_path: Path) -> None:
    go = tmp_path / "go"
    with Engine(data_dir=tmp_path / "wfa", config=config()) as engine:

        async def main() -> None:
            handle = await engine.submit_async(waits_for(go))
            with pytest.raises(TimeoutError, match="still"):
                await handle.wait_async(timeout=0.3)

        asyncio.run(main())
        assert engine._async_changes._waiting == set()
        go.write_text("")
        assert engine.handle(engine.runs()[0].run_id).wait(timeout=30).status == "succeeded"


def test_submit_async_validates_like_submit(tmp_path: Path) -> None:
    bad = workflow_from_data(
        {"name": "bad", "inputs": {"n": 1}, "steps": [{"id": "a", "run": ["true"]}]}
    )
    with Engine(data_dir=tmp_path / "wfa", config=config()) as engine:
        with pytest.raises(ValidationError) as sync_error:
            engine.submit(bad, {"nope": 1})
        with pytest.raises(type(sync_error.value)) as async_error:
            asyncio.run(engine.submit_async(bad, {"nope": 1}))
        assert str(async_error.value) == str(sync_error.value)
