"""The run's objects stay frozen (gc.freeze) to the process's end.

The gate's run objects are frozen once its result is in hand (GateSession._set_result): the
collections while the items run, the ones pytest makes at exit and the interpreter's own at
shutdown then skip them (0.6 s at 2,000 canaries, measured). A process that runs pytest.main()
again gets them back when its next evalgate session starts (`thaw`)."""

from __future__ import annotations

import gc

_frozen = [False]


def mark_frozen() -> None:
    gc.freeze()
    _frozen[0] = True


def thaw() -> None:
    """Give a previous session's frozen objects back to the collector."""
    if _frozen[0]:
        gc.unfreeze()
        _frozen[0] = False
