"""Placeholder package of the insurance-lead-agent example (installed by its setup step)."""
