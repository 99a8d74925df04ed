"""Discrete-event simulation of a prefill/decode deployment in JAX (issue #7).

prefill.py: the FIFO prefill pool (round robin by a max-plus associative scan, least_work by the
Kiefer-Wolfowitz recursion); decode.py: continuous batching, event to event; engine.py: simulate() over
many rows (vmapped) and the statistics; reference.py: the same in plain NumPy (tests, benchmark);
paper.py: the paper's case and the bisection of a deployment's TPM limit.
"""

from pdfleet.simulate.engine import SimInput, SimStats, poisson_arrivals, simulate

__all__ = ["SimInput", "SimStats", "poisson_arrivals", "simulate"]
