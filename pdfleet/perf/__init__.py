"""Performance model: queueing, prefill, decode, memory and roofline formulas."""
