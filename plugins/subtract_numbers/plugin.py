"""subtract_numbers: the original platform's subtraction, as a Sandcell Python plugin."""

from __future__ import annotations

from sandcell_plugin import Context, plugin


@plugin(name="subtract_numbers", version="1.0.0")
def subtract(ctx: Context, operand1: float, operand2: float) -> dict[str, object]:
    ctx.progress(0, "received operands")
    result = float(operand1) - float(operand2)
    ctx.progress(100, "done")
    return {"result": result, "operation": "subtract",
            "operand1": float(operand1), "operand2": float(operand2)}
