"""Solvers: choose a candidate and an instance count for every (quarter, workload, role)."""
