"""WorkflowAutomator's body: pykka actors that drive the state machine live."""

from __future__ import annotations

__all__: list[str] = []
