"""The plugin runtime: a registry of manifests, warm pools of PPP workers, and invocations.

``registry`` reads manifests, ``workers`` starts and talks to worker containers over gRPC,
``service`` runs invocations (no HTTP), ``handlers`` serves them under ``/api/v1``.
"""
