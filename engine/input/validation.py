"""Cross-field rules of a workflow (docs/workflow-file.md), checked before anything executes.

engine/input/loading.py checks shape (types, unknown and missing keys); this module
checks what only the whole workflow and the engine configuration can tell:
dependencies, cycles, expressions, agents, limits. Every rule runs and every
problem is reported at once, each with its location and what to do, so that a
user fixes a workflow in one pass. Rules are plain functions over the spec;
the machine's size enters as a value (`MachineCapacity`) so tests can pin it.
"""

from __future__ import annotations

import difflib
import graphlib
import os
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psutil
from croniter import croniter

from engine.input.child_files import load_with_children, with_registered
from engine.rules.config import EngineConfig
from engine.rules.errors import ExpressionError, Problem, ValidationError
from engine.rules.expressions import (
    compile_expression,
    referenced_inputs,
    referenced_steps,
    template_expressions,
)
from engine.rules.input_types import declaration_problems, input_problems
from engine.rules.policies.schedules import schedule_of
from engine.rules.spec import Mode, WorkflowSpec
from engine.rules.values import too_large, unstorable

GENERIC_CAPABILITY = "default"
"""The one capability of the generic agents made when the config has no `agents:`."""


def generic_agent_names(config: EngineConfig) -> list[str]:
    """The names of the agents the engine runs: the configured ones, else the generic
    `agent-1`...`agent-N` of resources.agent_pool_size (as actors/runtime.py makes them)."""
    if config.agents is not None:
        return [agent.name for agent in config.agents]
    return [f"agent-{n}" for n in range(1, config.resources.agent_pool_size + 1)]


@dataclass(frozen=True)
class MachineCapacity:
    """What this machine could ever give one step."""

    cpu: float  # logical cores
    memory_mb: float

    @classmethod
    def current(cls) -> MachineCapacity:
        return cls(
            cpu=float(psutil.cpu_count(logical=True) or 1),
            memory_mb=psutil.virtual_memory().total / (1024 * 1024),
        )


def validate_workflow(
    spec: WorkflowSpec,
    config: EngineConfig,
    machine: MachineCapacity | None = None,
    _parents: tuple[str, ...] = (),
) -> list[Problem]:
    """Every cross-field problem of `spec` under `config`, in file order (its child
    workflows' too; `_parents`: the workflows that run this one, to find cycles)."""
    machine = machine or MachineCapacity.current()
    graph = _Graph(spec)
    problems: list[Problem] = []
    for rule in _RULES:
        problems.extend(rule(spec, config, graph))
    problems.extend(check_resources_fit(spec, config, machine))
    problems.extend(declaration_problems(spec.inputs))
    problems.extend(check_child_workflows(spec, config, graph, machine, _parents))
    return sorted(problems, key=_step_order)


def check_workflow(
    spec: WorkflowSpec,
    config: EngineConfig | None = None,
    *,
    source: str | None = None,
    machine: MachineCapacity | None = None,
) -> WorkflowSpec:
    """`spec` unchanged if valid under `config` (defaults when None); else ValidationError."""
    problems = validate_workflow(spec, config or EngineConfig(), machine)
    if problems:
        raise ValidationError(problems, source=source)
    return spec


def validate_file(
    path: str | os.PathLike[str],
    config: EngineConfig,
    machine: MachineCapacity | None = None,
    registered: Mapping[str, WorkflowSpec] | None = None,
) -> tuple[WorkflowSpec | None, list[Problem]]:
    """Every problem of the workflow file at `path`, schema and cross-field at once.

    The cross-field rules run on whatever parsed, except where a schema problem
    already covers the place (a step whose `run` has the wrong type is not also
    reported as having no `run`). The spec is None when too little of it parsed.
    `registered`: workflows a step's `workflow:` may name (Engine.register)."""
    try:
        spec, problems = load_with_children(path)
    except ValidationError as exc:
        return None, list(exc.problems)
    if spec is None:
        return None, problems
    spec = with_registered(spec, registered or {})
    covered = [p.location for p in problems if p.location != "$"]
    problems += [
        p
        for p in validate_workflow(spec, config, machine)
        if not any(_related(p.location, other) for other in covered)
    ]
    return spec, sorted(problems, key=_step_order)


def load_checked(
    path: str | os.PathLike[str],
    config: EngineConfig,
    machine: MachineCapacity | None = None,
    registered: Mapping[str, WorkflowSpec] | None = None,
) -> WorkflowSpec:
    """The workflow at `path` if it is valid under `config`; else ValidationError with
    every problem of the file."""
    spec, problems = validate_file(path, config, machine, registered)
    if problems or spec is None:
        raise ValidationError(problems, source=str(path))
    return spec


def check_inputs(spec: WorkflowSpec, given: Mapping[str, Any]) -> list[Problem]:
    """Problems of the inputs given to a run of `spec`. A workflow that declares no
    inputs takes any; one that declares some takes only those."""
    problems: list[Problem] = []
    if spec.inputs:
        declared = ", ".join(sorted(spec.inputs))
        problems += [
            Problem(f"-i {name}", "not an input of this workflow", f"declared inputs: {declared}")
            for name in sorted(set(given) - set(spec.inputs))
        ]
        problems += input_problems(spec.inputs, given)
    for name, value in given.items():
        if why := unstorable(value):
            problems.append(Problem(f"-i {name}", *why))
    if not problems and (why := too_large(dict(given))):  # one RunSubmitted must hold them
        problems.append(Problem("-i", f"the input object {why[0]}", why[1]))
    return problems


def _related(location: str, other: str) -> bool:
    """`location` is `other`, or one holds the other (`$.steps[1]` and `$.steps[1].run`)."""
    if location == other:
        return True
    short, long = sorted((location, other), key=len)
    return long.startswith(short) and long[len(short)] in ".["


def validate_config(config: EngineConfig) -> list[Problem]:
    """Cross-field problems of an engine configuration."""
    problems: list[Problem] = []
    seen: dict[str, int] = {}
    for index, agent in enumerate(config.agents or ()):
        where = f"$.agents[{index}]"
        if agent.name in seen:
            problems.append(
                Problem(
                    f"{where}.name",
                    f"duplicate agent name `{agent.name}` (also $.agents[{seen[agent.name]}])",
                    "give every agent a unique name",
                )
            )
        seen.setdefault(agent.name, index)
        if agent.backend == "dask" and not agent.address:
            problems.append(
                Problem(
                    where,
                    f"agent `{agent.name}` uses the dask backend but has no `address`",
                    'add the scheduler address, e.g. address: "tcp://127.0.0.1:8786"',
                )
            )
    if config.agents is not None and not config.agents:
        problems.append(
            Problem(
                "$.agents",
                "`agents` is an empty list, so no step could ever run",
                "list at least one agent, or remove `agents:` to get generic agents",
            )
        )
    capabilities = sorted({c for a in config.agents or () for c in a.capabilities} or {"default"})
    for name in sorted(config.rate_limits):  # a limit no step could ever be under
        if name not in capabilities:
            problems.append(
                Problem(
                    f"$.rate_limits.{name}",
                    f"no agent has capability `{name}`{_did_you_mean(name, capabilities)}",
                    f"rate_limits are keyed by capability: {_listing(capabilities)}",
                )
            )
    return problems


# ---------------------------------------------------------------------------
# The dependency graph


class _Graph:
    """Step ids, their positions and who runs before whom (first definition wins)."""

    def __init__(self, spec: WorkflowSpec) -> None:
        self.spec = spec
        self.index: dict[str, int] = {}
        for position, step in enumerate(spec.steps):
            self.index.setdefault(step.id, position)
        self._upstream: dict[str, frozenset[str]] = {}

    def direct(self, position: int) -> set[str]:
        """Steps that the step at `position` directly waits for (known ids only)."""
        step = self.spec.steps[position]
        before = {d for d in step.after if d in self.index and d != step.id}
        if self.spec.mode is Mode.SEQUENTIAL and position > 0:
            before.add(self.spec.steps[position - 1].id)
        return before

    def upstream(self, position: int) -> frozenset[str]:
        """Every step that has finished before the step at `position` starts."""
        step_id = self.spec.steps[position].id
        if step_id in self._upstream and self.index[step_id] == position:
            return self._upstream[step_id]
        found: set[str] = set()
        pending = list(self.direct(position))
        while pending:
            current = pending.pop()
            if current in found:
                continue
            found.add(current)
            pending.extend(self.direct(self.index[current]))
        found.discard(step_id)  # a cycle is reported on its own
        result = frozenset(found)
        if self.index[step_id] == position:
            self._upstream[step_id] = result
        return result


Rule = Callable[[WorkflowSpec, EngineConfig, _Graph], Iterable[Problem]]


# ---------------------------------------------------------------------------
# Rules


def check_step_count(spec: WorkflowSpec, config: EngineConfig, graph: _Graph) -> Iterator[Problem]:
    """More steps than execution.max_steps_per_workflow."""
    limit = config.execution.max_steps_per_workflow
    if len(spec.steps) > limit:
        yield Problem(
            "$.steps",
            f"{len(spec.steps)} steps; the engine allows at most {limit}",
            "split the workflow, or raise execution.max_steps_per_workflow in the engine config",
        )
    if not spec.steps:
        yield Problem("$.steps", "the workflow has no steps", "add at least one step")


def check_duplicate_ids(
    spec: WorkflowSpec, config: EngineConfig, graph: _Graph
) -> Iterator[Problem]:
    """Two steps with the same id."""
    for position, step in enumerate(spec.steps):
        first = graph.index[step.id]
        if first != position:
            yield Problem(
                f"$.steps[{position}].id",
                f"duplicate step id `{step.id}`; $.steps[{first}] has it already",
                "give every step a unique id",
            )


def check_run_or_call(spec: WorkflowSpec, config: EngineConfig, graph: _Graph) -> Iterator[Problem]:
    """At most one body (`run`, `call`, `sleep`, `until`, `wait_for`), and none only
    for a gate (`approval: true`), which succeeds with empty outputs once approved;
    `run` names a program; an `until` without `${{ }}` is an ISO 8601 time."""
    for position, step in enumerate(spec.steps):
        where = f"$.steps[{position}]"
        bodies = [
            key
            for key, value in (
                ("run", step.run),
                ("call", step.call),
                ("sleep", step.sleep),
                ("until", step.until),
                ("wait_for", step.wait_for),
                ("workflow", step.workflow),
            )
            if value is not None
        ]
        if len(bodies) > 1 and not (step.run is not None and step.call is not None):
            yield Problem(
                where,
                f"step `{step.id}` has {' and '.join(f'`{b}`' for b in bodies)}",
                "keep one: a step runs a command, a function or a workflow, sleeps, or waits "
                "for a signal",
            )
        if step.until is not None and "${{" not in step.until:
            try:
                datetime.fromisoformat(step.until.strip())
            except ValueError:
                yield Problem(
                    f"{where}.until",
                    f"`{step.until}` is not an ISO 8601 time",
                    'write e.g. until: "2026-12-01T09:00:00Z", or a ${{ }} template',
                )
        if bodies and bodies[0] not in ("run", "call"):
            continue
        if step.run is None and step.call is None and not step.approval:
            yield Problem(
                where,
                f"step `{step.id}` has neither `run` nor `call`",
                'add `run: ["program", "arg"]` or `call: module:function`, or make it a '
                "gate with `approval: true`, or give it `sleep`, `until` or `wait_for`",
            )
        elif step.run is not None and step.call is not None:
            yield Problem(
                where,
                f"step `{step.id}` has both `run` and `call`",
                "keep one: a step runs either a command or a Python function",
            )
        elif step.run is not None and not step.run:
            yield Problem(
                f"{where}.run",
                "`run` is an empty list",
                'name the program and its arguments, e.g. run: ["python3", "build.py"]',
            )
        elif step.run is not None and not step.run[0].strip():
            yield Problem(
                f"{where}.run[0]",
                "the program name is empty",
                "put the program first, e.g. python3",
            )


def check_dependencies(
    spec: WorkflowSpec, config: EngineConfig, graph: _Graph
) -> Iterator[Problem]:
    """`after` names existing, other, earlier-in-sequential-mode steps."""
    ids = list(graph.index)
    for position, step in enumerate(spec.steps):
        for k, name in enumerate(step.after):
            where = f"$.steps[{position}].after[{k}]"
            if name not in graph.index:
                yield Problem(
                    where,
                    f"unknown step `{name}`{_did_you_mean(name, ids)}",
                    f"`after` lists step ids of this workflow: {_listing(ids)}",
                )
            elif name == step.id:
                yield Problem(
                    where,
                    f"step `{step.id}` waits for itself",
                    "remove it from its own `after`",
                )
            elif spec.mode is Mode.SEQUENTIAL and graph.index[name] > position:
                yield Problem(
                    where,
                    f"`{name}` is listed after `{step.id}`, but mode is sequential",
                    "in sequential mode steps run in the order listed; move "
                    f"`{name}` before `{step.id}` or use mode: dag",
                )


def check_cycles(spec: WorkflowSpec, config: EngineConfig, graph: _Graph) -> Iterator[Problem]:
    """Dependency cycles, each named step by step (every cycle, not just the first)."""
    waits_for = {
        step.id: {d for d in step.after if d in graph.index and d != step.id}
        for position, step in enumerate(spec.steps)
        if graph.index[step.id] == position
    }
    for _ in range(sum(len(d) for d in waits_for.values())):
        try:
            graphlib.TopologicalSorter(waits_for).prepare()
            return
        except graphlib.CycleError as exc:
            # graphlib lists each node before one that waits for it; reverse so
            # that each waits for the next, and start at the earliest-listed step.
            cycle = list(reversed(exc.args[1][:-1]))
            start = min(range(len(cycle)), key=lambda i: graph.index[cycle[i]])
            cycle = cycle[start:] + cycle[:start]
            first, second = cycle[0], cycle[1 % len(cycle)]
            position = graph.index[first]
            k = spec.steps[position].after.index(second)
            path = " -> ".join([*cycle, first])
            yield Problem(
                f"$.steps[{position}].after[{k}]",
                f"dependency cycle: {path} (each waits for the next)",
                "remove one of these `after` entries so the steps can run in order",
            )
            waits_for[first].discard(second)


def check_agents(spec: WorkflowSpec, config: EngineConfig, graph: _Graph) -> Iterator[Problem]:
    """The capability a step needs, and its fallback agents, exist in the config."""
    if config.agents is None:
        capabilities = {GENERIC_CAPABILITY}
        names = generic_agent_names(config)
        provide = (
            "without `agents:` in the engine config every agent is generic, with "
            f"capability `{GENERIC_CAPABILITY}` only; add an agent with this capability "
            "under `agents:` (--config), or drop `agent:`"
        )
    else:
        capabilities = {c for agent in config.agents for c in agent.capabilities}
        names = [agent.name for agent in config.agents]
        provide = (
            "add it to an agent's `capabilities` in the engine config; configured: "
            f"{_listing(sorted(capabilities))}"
        )
    for position, step in enumerate(spec.steps):
        if step.agent not in capabilities:
            yield Problem(
                f"$.steps[{position}].agent",
                f"no agent has capability `{step.agent}`"
                f"{_did_you_mean(step.agent, sorted(capabilities))}",
                provide,
            )
        for k, name in enumerate(step.fallback):
            if name not in names:
                yield Problem(
                    f"$.steps[{position}].fallback[{k}]",
                    f"unknown agent `{name}`{_did_you_mean(name, names)}",
                    f"`fallback` names agents of the engine config: {_listing(names)}"
                    if config.agents is not None
                    else "without `agents:` in the engine config the agents are "
                    f"{_listing(names)}; configure named agents under `agents:` (--config)",
                )


def check_expressions(spec: WorkflowSpec, config: EngineConfig, graph: _Graph) -> Iterator[Problem]:
    """`when`, `foreach` and `${{ }}` compile and read only upstream steps."""
    for position, step in enumerate(spec.steps):
        where = f"$.steps[{position}]"
        if step.when is not None:
            if not config.execution.enable_conditional_execution:
                yield Problem(
                    f"{where}.when",
                    "conditions are disabled in the engine config",
                    "remove `when`, or set execution.enable_conditional_execution: true",
                )
            yield from _check_source(step.when, f"{where}.when", position, graph, "`when`")
        if step.foreach is not None:
            yield from _check_source(
                step.foreach, f"{where}.foreach", position, graph, "`foreach`", item=False
            )
        for k, arg in enumerate(step.run or ()):
            yield from _check_templates(arg, f"{where}.run[{k}]", position, graph)
        for key, value in step.env.items():
            yield from _check_templates(value, _key(f"{where}.env", key), position, graph)
        if step.until is not None:
            yield from _check_templates(step.until, f"{where}.until", position, graph)
        for location, text in _strings(step.params, f"{where}.with"):
            yield from _check_templates(text, location, position, graph)


def check_call_modules(
    spec: WorkflowSpec, config: EngineConfig, graph: _Graph
) -> Iterator[Problem]:
    """With execution.call_modules set, `call:` names only those modules or their
    submodules (`mysteps` allows `mysteps` and `mysteps.sub`, not `mystepsx`)."""
    allowed = config.execution.call_modules
    if allowed is None:
        return
    for position, step in enumerate(spec.steps):
        if step.call is None:
            continue
        module = step.call.partition(":")[0]
        if not any(module == prefix or module.startswith(prefix + ".") for prefix in allowed):
            yield Problem(
                f"$.steps[{position}].call",
                f"module `{module}` is not allowed by execution.call_modules",
                f"allowed: {_listing(list(allowed))} and their submodules; add the module to "
                "execution.call_modules in the engine config",
            )


def check_schedule(spec: WorkflowSpec, config: EngineConfig, graph: _Graph) -> Iterator[Problem]:
    """`schedule` (or its `cron`) is a cron expression croniter accepts."""
    schedule = schedule_of(spec)
    if schedule is None:
        return
    try:
        croniter(schedule.cron)
    except (ValueError, KeyError, TypeError) as exc:
        yield Problem(
            "$.schedule" if isinstance(spec.schedule, str) else "$.schedule.cron",
            f"`{schedule.cron}` is not a cron expression: {exc}",
            'five fields: minute hour day-of-month month day-of-week, e.g. "0 2 * * *"',
        )


def check_resources_fit(
    spec: WorkflowSpec, config: EngineConfig, machine: MachineCapacity
) -> Iterator[Problem]:
    """A step needing more than the machine (or the configured network) could never run;
    nor could one whose declaration alone is above a `max_*_usage` cap, since no attempt
    starts while usage plus the declaration would exceed it. (Storage is checked when
    the step is admitted: only the engine knows its data directory's disk.)"""
    caps = config.resources
    for position, step in enumerate(spec.steps):
        if step.resources is None:
            continue
        where = f"$.steps[{position}].resources"
        limits: Sequence[tuple[str, float, float, str, str, float | None]] = (
            (
                "cpu",
                step.resources.cpu,
                machine.cpu,
                "cores on this machine",
                "cpu",
                caps.max_cpu_usage,
            ),
            (
                "memory_mb",
                step.resources.memory_mb,
                machine.memory_mb,
                "MB of memory here",
                "memory",
                caps.max_memory_usage,
            ),
            (
                "network_mbps",
                step.resources.network_mbps,
                caps.network_capacity_mbps,
                "Mbit/s (resources.network_capacity_mbps)",
                "network",
                caps.max_network_usage,
            ),
        )
        for key, wanted, available, unit, resource, cap in limits:
            if wanted > available:
                yield Problem(
                    f"{where}.{key}",
                    f"step `{step.id}` needs {key} {wanted:g} but there are only "
                    f"{available:g} {unit}; it could never fit",
                    f"lower `{key}` to at most {available:g}",
                )
            elif cap is not None and wanted > 0 and 100 * wanted / available > cap:
                most = available * cap / 100
                yield Problem(
                    f"{where}.{key}",
                    f"step `{step.id}` needs {key} {wanted:g} of {available:g} "
                    f"({100 * wanted / available:.3g}%), above max_{resource}_usage {cap:g}%, "
                    "so it could never start",
                    f"lower `{key}` to at most {most:.3g}, or raise "
                    f"resources.max_{resource}_usage in the engine config",
                )


def check_env(spec: WorkflowSpec, config: EngineConfig, graph: _Graph) -> Iterator[Problem]:
    """A step's `env:` may not set `WFA_*`: those name the attempt, and the engine sets them."""
    for position, step in enumerate(spec.steps):
        for name in step.env:
            if name.startswith("WFA_"):
                yield Problem(
                    _key(f"$.steps[{position}].env", name),
                    f"`{name}` is set by the engine for every attempt",
                    "remove it, or use a name that does not start with WFA_",
                )


# ---- child workflows ----


def check_child_workflows(
    spec: WorkflowSpec,
    config: EngineConfig,
    graph: _Graph,
    machine: MachineCapacity,
    parents: tuple[str, ...] = (),
) -> Iterator[Problem]:
    """`outputs:` read known steps; each `workflow:` is known, takes the `with:` given,
    has no per-attempt `timeout`, is valid itself, and runs no workflow that runs it."""
    for name, source in spec.outputs.items():
        yield from _check_output(source, _key("$.outputs", name), graph)
    names = (*parents, spec.name)
    for position, step in enumerate(spec.steps):
        if step.workflow is None:
            continue
        where = f"$.steps[{position}]"
        child = spec.workflows.get(step.workflow)
        runs = child.name if child is not None else step.workflow
        if runs in names:
            yield Problem(
                f"{where}.workflow",
                f"workflow `{runs}` includes itself ({' -> '.join((*names, runs))})",
                "a child workflow may not run its parent or itself; break the cycle",
            )
            continue
        if child is None:
            yield Problem(
                f"{where}.workflow",
                f"no workflow `{step.workflow}`",
                "name a workflow file (.yaml, .yml, .json, .toml) relative to this file, or "
                "a Python workflow registered with Engine.register",
            )
            continue
        if step.timeout is not None:
            yield Problem(
                f"{where}.timeout",
                "a `workflow:` step has no per-attempt timeout",
                "give the child workflow a `timeout:`; its timing out fails this step",
            )
        if child.inputs:
            for key in sorted(set(step.params) - set(child.inputs)):
                yield Problem(
                    _key(f"{where}.with", key),
                    f"`{key}` is not an input of workflow `{child.name}`",
                    f"its inputs: {_listing(sorted(child.inputs))}",
                )
        for p in validate_workflow(child, config, machine, names):
            yield Problem(
                f"{where}.workflow", f"in `{step.workflow}`: {p.location}: {p.message}", p.hint
            )


def _check_output(source: str, where: str, graph: _Graph) -> Iterator[Problem]:
    whole = re.fullmatch(r"\s*\$\{\{(.*)\}\}\s*", source, re.DOTALL)
    text = whole.group(1) if whole else source
    try:
        compile_expression(text)
    except ExpressionError as exc:
        yield Problem(where, f"output `{source}` does not compile: {_tidy(exc)}", "fix the CEL")
        return
    ids = list(graph.index)
    for name in sorted(referenced_steps(text)):
        if name not in graph.index:
            yield Problem(
                where,
                f"output reads unknown step `{name}`{_did_you_mean(name, ids)}",
                f"steps of this workflow: {_listing(ids)}",
            )


# ---- concurrency keys ----


def check_concurrency(spec: WorkflowSpec, config: EngineConfig, graph: _Graph) -> Iterator[Problem]:
    """The key is rendered at submission, from the inputs alone: it may read nothing else."""
    if spec.concurrency is None:
        return
    where, key = "$.concurrency.key", spec.concurrency.key
    sources = template_expressions(key)
    if len(_OPEN.findall(key)) != len(sources):
        yield Problem(where, "`${{` without a closing `}}`", "write templates as ${{ expression }}")
    for source in sources:
        try:
            program = compile_expression(source)
        except ExpressionError as exc:
            yield Problem(
                where,
                f"template `{source}` does not compile: {_tidy(exc)}",
                "fix the CEL expression",
            )
            continue
        others = sorted(set(program.variables()) - {"inputs"})
        if others:
            yield Problem(
                where,
                f"the concurrency key reads `{others[0]}`; it is rendered when the run is "
                "submitted, before anything ran",
                'build it from inputs only, e.g. "${{ inputs.customer }}"',
            )
        for name in sorted(referenced_inputs(source)) if spec.inputs else ():
            if name not in spec.inputs:
                yield Problem(
                    where,
                    f"the concurrency key reads unknown input `{name}`"
                    f"{_did_you_mean(name, sorted(spec.inputs))}",
                    f"declared inputs: {_listing(sorted(spec.inputs))}; declare it under `inputs:`",
                )


_RULES: tuple[Rule, ...] = (
    check_step_count,
    check_duplicate_ids,
    check_run_or_call,
    check_dependencies,
    check_cycles,
    check_agents,
    check_expressions,
    check_call_modules,
    check_schedule,
    check_env,
    check_concurrency,
)


# ---------------------------------------------------------------------------
# Expression helpers


def _check_source(
    source: str, where: str, position: int, graph: _Graph, what: str, *, item: bool = True
) -> Iterator[Problem]:
    step = graph.spec.steps[position]
    try:
        program = compile_expression(source)
    except ExpressionError as exc:
        hint = "fix the CEL expression"
        dashed = [i for i in graph.index if "-" in i and f"steps.{i}" in source]
        if dashed:
            hint = f'write a step id with "-" as steps["{dashed[0]}"]'
        yield Problem(where, f"{what} `{source}` does not compile: {_tidy(exc)}", hint)
        return
    if "item" in program.variables() and not (item and step.foreach is not None):
        yield Problem(
            where,
            f"{what} reads `item`, which exists only in the instances of a `foreach` step",
            "add `foreach:` to the step, or remove `item`"
            if item
            else "build the list from `inputs` or upstream `steps`; items exist only after it",
        )
    declared = graph.spec.inputs
    for name in sorted(referenced_inputs(source)) if declared else ():
        if name not in declared:
            yield Problem(
                where,
                f"{what} reads unknown input `{name}`{_did_you_mean(name, sorted(declared))}",
                f"declared inputs: {_listing(sorted(declared))}; declare it under `inputs:`",
            )
    upstream = graph.upstream(position)
    ids = list(graph.index)
    for name in sorted(referenced_steps(source)):
        if name not in graph.index:
            yield Problem(
                where,
                f"{what} reads unknown step `{name}`{_did_you_mean(name, ids)}",
                f"steps of this workflow: {_listing(ids)}",
            )
        elif name == step.id:
            yield Problem(
                where,
                f"{what} of step `{step.id}` reads the step's own result",
                "a step's outputs exist only after it ran; read an upstream step",
            )
        elif name not in upstream:
            yield Problem(
                where,
                f"{what} reads step `{name}`, which is not upstream of `{step.id}`, "
                "so its outputs might not exist yet",
                f"add `{name}` to `after` of `{step.id}`, directly or through a step that "
                "waits for it",
            )


_OPEN = re.compile(r"\$\{\{")


def _check_templates(text: str, where: str, position: int, graph: _Graph) -> Iterator[Problem]:
    sources = template_expressions(text)
    if len(_OPEN.findall(text)) != len(sources):
        yield Problem(where, "`${{` without a closing `}}`", "write templates as ${{ expression }}")
    for source in sources:
        yield from _check_source(source, where, position, graph, "template")


def _strings(value: Any, where: str) -> Iterator[tuple[str, str]]:
    """Every string inside `with`, with its location."""
    if isinstance(value, str):
        yield where, value
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield from _strings(item, _key(where, str(key)))
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            yield from _strings(item, f"{where}[{index}]")


# ---------------------------------------------------------------------------
# Small helpers

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")


def _key(where: str, key: str) -> str:
    return f"{where}.{key}" if _IDENTIFIER.match(key) else f'{where}["{key}"]'


def _did_you_mean(name: str, choices: Sequence[str]) -> str:
    close = difflib.get_close_matches(name, choices, n=1, cutoff=0.6)
    return f"; did you mean `{close[0]}`?" if close else ""


def _listing(names: Sequence[str], limit: int = 10) -> str:
    shown = ", ".join(f"`{n}`" for n in names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def _tidy(exc: ExpressionError) -> str:
    """The CEL parser's message without its echo of the source and token list."""
    text = re.sub(r"^Failed to parse expression .*?: ERROR: <input>:", "at ", str(exc))
    return re.sub(r"\s*expecting \{[^}]*\}", "", text)


_STEP_LOCATION = re.compile(r"^\$\.steps\[(\d+)\]")


def _step_order(problem: Problem) -> int:
    """Workflow-level problems first, then step by step in file order (sorting is stable)."""
    found = _STEP_LOCATION.match(problem.location)
    return int(found.group(1)) if found else -1
