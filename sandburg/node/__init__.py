"""The node runtime: privileged, trusted code that runs sandboxes on this host (never imported by the SDK)."""
