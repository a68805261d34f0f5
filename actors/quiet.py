"""Whether an actor has work: what lets a fake clock skip time safely.

`engine.testing`'s auto-skip jumps to the next timer only when nothing but a
timer can move: no attempt is in flight and no actor holds a message or is
still starting. pykka's inbox is a `queue.Queue` whose unfinished-task count
goes up on every `tell`; `Accounted` counts a message done only after it was
handled, so a count of zero means the actor has nothing queued and nothing in
hand. It hooks pykka's message and start-up steps (pykka 4).
"""

from __future__ import annotations

from typing import Any


class Accounted:
    """Mix in before `pykka.ThreadingActor`: `quiet()` is true when the actor is idle."""

    actor_inbox: Any
    actor_stopped: Any
    _begun = False

    def _actor_loop_setup(self) -> None:
        super()._actor_loop_setup()  # type: ignore[misc]
        self._begun = True

    def _handle_receive(self, message: Any) -> Any:
        try:
            return super()._handle_receive(message)  # type: ignore[misc]
        finally:
            self.actor_inbox.task_done()

    def quiet(self) -> bool:
        if self.actor_stopped.is_set():
            return True
        return self._begun and self.actor_inbox.unfinished_tasks == 0
