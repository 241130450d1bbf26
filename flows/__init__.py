"""Prefect flows composing the stage tasks, and the circuitflow command line."""
