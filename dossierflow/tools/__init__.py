"""The tools: demo, bench, chaos and what they share (workload, fault plans, local cluster)."""
