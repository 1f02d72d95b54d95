"""Every integrator by name: the core's six and the solvers of :mod:`dmcmc_edu.solvers`, joined here, explicitly.

The core knows only its own six (:data:`dmcmc_edu.core.integrators.INTEGRATORS`) and imports nothing outside
itself; the solvers package is a plain table (:data:`dmcmc_edu.solvers.SOLVERS`).  This module, a layer above
both, builds the full table on request:

* :func:`integrator_table` -- a new dict, the core's entries first (the six, then anything registered), then
  the solvers;
* :func:`get_integrator` -- a name (or a function, returned as it is) looked up in that table.

Nothing here changes the core's table: what hands a user's name to the core passes the function
(``sample_from_noise(integrator=get_integrator("unipc"))``) or the table
(``DMCMCSampler(..., integrators=integrator_table())``), so ``DMCMCConfig(integrator="dpmpp_2m")`` resolves in the
commands, experiments and explorers, and the core's own table stays the paper's six.
"""

from __future__ import annotations

from typing import Callable

from dmcmc_edu.core.integrators import INTEGRATORS
from dmcmc_edu.solvers import SOLVERS

__all__ = ["integrator_table", "get_integrator"]


def integrator_table() -> dict[str, Callable]:
    """All integrators by name: the core's table (the paper's six first), then the solvers."""
    return {**INTEGRATORS, **{k: v for k, v in SOLVERS.items() if k not in INTEGRATORS}}


def get_integrator(name) -> Callable:
    """An integrator of :func:`integrator_table` by name (a one-line error lists the known names); a function is
    returned as it is."""
    if callable(name):
        return name
    table = integrator_table()
    if name not in table:
        raise ValueError(f"unknown integrator {name!r}; known: {', '.join(table)}")
    return table[name]

