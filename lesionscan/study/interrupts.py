"""Ctrl-C and SIGTERM during a study: raised at once, and never lost.

Python runs a signal handler at the next bytecode, wherever that is. If that
is a finaliser (an object's ``__del__`` or a weakref callback: papermill,
jupyter_client and pyzmq drop kernel clients and sockets as a chapter's kernel
starts), the KeyboardInterrupt it raises is printed as "Exception ignored"
and the program goes on: the interrupt test saw the study run to its end
once in three tries. So the handlers here also record the signal, and the
runner calls :func:`raise_if_pending` as each cell of a chapter starts (it is
nbclient's ``on_cell_start`` hook) and after each chapter: a swallowed Ctrl-C
stops the study at the next cell instead of never.
"""

from __future__ import annotations

import contextlib
import signal
import threading

from lesionscan.core.errors import Terminated

_pending: type[KeyboardInterrupt] | None = None


def _record_and_raise(kind: type[KeyboardInterrupt]):
    def handler(signum, frame):
        global _pending
        _pending = kind
        raise kind()
    return handler


@contextlib.contextmanager
def guarded():
    """For the duration: Ctrl-C raises KeyboardInterrupt, SIGTERM :class:`Terminated`, and both are recorded."""
    if threading.current_thread() is not threading.main_thread():  # only the main thread may set handlers
        yield
        return
    previous = {signal.SIGINT: signal.signal(signal.SIGINT, _record_and_raise(KeyboardInterrupt)),
                signal.SIGTERM: signal.signal(signal.SIGTERM, _record_and_raise(Terminated))}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
        handled()


def raise_if_pending(**hook_arguments) -> None:
    """Raise the interrupt a finaliser swallowed, if any (nbclient passes the cell as keywords; unused)."""
    if _pending is not None:
        raise _pending()


def handled() -> None:
    """The interrupt has reached the code that handles it: nothing is pending any more."""
    global _pending
    _pending = None
