"""A Python workflow with typed inputs and typed outputs (tests/engine/test_typed_io.py)."""

from __future__ import annotations

import msgspec

from engine import StepContext, Workflow


class Order(msgspec.Struct, frozen=True):
    sku: str
    count: int = 1


class OrderInputs(msgspec.Struct, frozen=True):
    order: Order
    customer: str
    express: bool = False


class Quote(msgspec.Struct, frozen=True):
    sku: str
    total: float


orders = Workflow("orders", inputs=OrderInputs)


@orders.step()
def quote(ctx: StepContext) -> Quote:
    order = msgspec.convert(ctx.inputs["order"], Order)
    return Quote(sku=order.sku, total=2.5 * order.count)


@orders.step(after=[quote])
def invoice(ctx: StepContext) -> dict[str, object]:
    q = ctx.steps.quote.outputs  # typed: a Quote
    assert isinstance(q, Quote), type(q)
    plain = ctx.steps["quote"]["outputs"]  # by id: plain data, as the log holds it
    assert isinstance(plain, dict)
    return {"line": f"{q.sku} x {q.total:.2f}", "typed": type(q).__name__}


def signup_inputs(email: str, seats: int = 5) -> None:
    """The inputs of `signup`, declared as typed parameters."""


signup = Workflow("signup", inputs=signup_inputs)


@signup.step()
def welcome(ctx: StepContext) -> dict[str, object]:
    return {"to": ctx.inputs["email"], "seats": ctx.inputs["seats"]}
