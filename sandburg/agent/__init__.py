"""The in-sandbox toolbox agent (stdlib only; see docs/agent-protocol.md)."""
