"""A Python workflow with typed inputs and outputs, tested in test_example_workflow.py.

The inputs are a msgspec Struct (checked when a run is submitted, with errors
that name the field), `quote` returns a Struct, and `invoice` reads it back
typed as `ctx.steps.quote.outputs`. `charge` talks to a payment service that
is sometimes down: it retries network failures with an hour of backoff, and
each attempt may take up to a week.
"""

from __future__ import annotations

import msgspec

from engine import StepContext, Workflow


class OrderInputs(msgspec.Struct, frozen=True):
    sku: str
    count: int = 1


class Quote(msgspec.Struct, frozen=True):
    sku: str
    total: float


PRICES = {"tea": 4.5, "cake": 3.0}

orders = Workflow("orders", inputs=OrderInputs, timeout=14 * 86400)


@orders.step()
def quote(ctx: StepContext) -> Quote:
    """Price the order."""
    order = msgspec.convert(ctx.inputs, OrderInputs)
    return Quote(sku=order.sku, total=PRICES[order.sku] * order.count)


@orders.step(
    after=[quote],
    retry={"max_attempts": 4, "initial_delay": 3600, "max_delay": 4 * 3600, "on": ["network"]},
    timeout=7 * 86400,
)
def charge(ctx: StepContext) -> dict[str, str]:
    """Charge the card (a real service in production; overridden in the tests)."""
    raise ConnectionError("no payment service in this example")


@orders.step(after=[charge])
def invoice(ctx: StepContext) -> dict[str, str]:
    """Write the invoice line from the typed quote and the payment's receipt."""
    q = ctx.steps.quote.outputs  # a Quote, since `quote` is annotated to return one
    receipt = ctx.steps["charge"]["outputs"]["receipt"]
    return {"line": f"{q.sku}: {q.total:.2f} paid ({receipt})"}
