"""Operating the gateway: structured logs (more to come: metrics, events, the live page)."""
