"""Ctrl-C that never lands in the middle of bookkeeping: :class:`InterruptShield`.

Python raises :class:`KeyboardInterrupt` for SIGINT between any two bytecodes. A run state
updated in several statements (an optimizer step, then the step counter and the position; an
epoch's record, then the scheduler, then the epoch counter) would be saved half-updated if the
interrupt landed between them, and a resumed run would repeat or skip work. While the shield
*holds*, a SIGINT is only noted; it is raised as soon as the hold is released, when the state
is coherent again. Outside a hold, SIGINT behaves as usual.

The shield installs its handler only in the main thread and only over Python's default SIGINT
handler, so a handler of the user's own is left alone.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType
from typing import Any

__all__ = ["InterruptShield"]


class InterruptShield:
    """Defers SIGINT while a critical section holds; raises it when the section ends.

    Attributes:
        holding: Whether a critical section is open.
        pending: Whether a SIGINT arrived during it (raised at :meth:`release`).
    """

    def __init__(self) -> None:
        self.holding = False
        self.pending = False
        self._previous: Any = None
        self._installed = False

    def install(self) -> None:
        """Take over SIGINT (main thread, Python's default handler only)."""
        if self._installed or threading.current_thread() is not threading.main_thread():
            return
        if signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
            return
        self._previous = signal.signal(signal.SIGINT, self._handle)
        self._installed = True

    def uninstall(self) -> None:
        """Give SIGINT back to the handler it had; forget any open hold."""
        self.holding = self.pending = False
        if self._installed:
            signal.signal(signal.SIGINT, self._previous)
            self._installed = False

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.holding:
            self.pending = True  # raised by release(), once the state is coherent
            return
        raise KeyboardInterrupt

    def hold(self) -> None:
        """Open a critical section (idempotent): a SIGINT from now on waits for release."""
        self.holding = True

    def release(self) -> None:
        """Close the critical section; raise the SIGINT that arrived during it, if any.

        Raises:
            KeyboardInterrupt: A SIGINT arrived while the section held.
        """
        self.holding = False
        if self.pending:
            self.pending = False
            raise KeyboardInterrupt

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        """A critical section as a ``with`` block (nested blocks release with the outer one)."""
        if self.holding:
            yield
            return
        self.hold()
        try:
            yield
        except BaseException:
            self.holding = self.pending = False  # the error propagates instead
            raise
        self.release()
