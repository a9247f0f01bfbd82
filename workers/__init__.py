"""Connector workers: run tasks against an accounting package and report the result."""
