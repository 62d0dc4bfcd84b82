"""The sandburg control plane (FastAPI). Not imported by the SDK."""
