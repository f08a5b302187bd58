"""The ILP solver behind the partition: HiGHS through PuLP, CBC only where HiGHS is missing.

HiGHS comes with ``highspy`` (a few MB); CBC stays a fallback for an install without it: a user's CBC
(``COIN_CMD``, e.g. cbcbox) or the one PuLP wheels bundle (``PULP_CBC_CMD``, deprecated in PuLP 3.3).
"""

from __future__ import annotations

import os
import sys
import threading
import warnings
from collections.abc import Callable

import pulp

SolverFactory = Callable[[float], pulp.LpSolver]

_banner_lock = threading.Lock()
_banner_shown = False


def _swallow_highs_banner() -> None:
    """Make the process's first HiGHS instance with file descriptor 1 pointed at /dev/null.

    HiGHS prints a copyright banner on C-level stdout when its first instance is made, before any
    option can silence it; it would land in ``napari-sci compress --json`` output. Later instances
    print nothing. Other threads' output during that instant is lost too, a price paid once.
    """
    global _banner_shown
    with _banner_lock:
        if _banner_shown:
            return
        import highspy

        sys.stdout.flush()
        saved = os.dup(1)
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, 1)
            highspy.Highs()
        finally:
            os.dup2(saved, 1)
            os.close(saved)
            os.close(devnull)
        _banner_shown = True


class WarmHiGHS(pulp.HiGHS):
    """PuLP's HiGHS, started from the variables' initial values (PuLP gives HiGHS no start).

    Without a start HiGHS can spend the whole time limit on a deep tree with few blocks allowed and
    return the root alone; from the greedy cut it proves the optimum in about a second.
    """

    def createAndConfigureSolver(self, lp: pulp.LpProblem) -> None:
        _swallow_highs_banner()
        super().createAndConfigureSolver(lp)

    def callSolver(self, lp: pulp.LpProblem) -> None:
        import highspy

        start = highspy.HighsSolution()
        start.col_value = [float(v.varValue or 0.0) for v in lp.variables()]
        lp.solverModel.setSolution(start)
        lp.solverModel.run()


def default_solver(time_limit: float) -> pulp.LpSolver:
    """HiGHS, silent, with a time limit and no gap tolerance; CBC where HiGHS is missing.

    HiGHS's default gaps (1e-4 relative, 1e-6 absolute) would let it stop before the partition's
    tie-break (1e-7 per block) decides, so they are set to (almost) nothing.
    """
    highs = WarmHiGHS(msg=False, timeLimit=time_limit, gapRel=0.0, gapAbs=1e-10)
    if highs.available():
        return highs
    coin = pulp.COIN_CMD(msg=False, timeLimit=time_limit)
    if coin.available():
        return coin
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return pulp.PULP_CBC_CMD(msg=False, timeLimit=time_limit)
