"""The HTTP API (FastAPI), served by ``flowbus up`` and ``flowbus server start``.

Import ``flowbus.api.app`` or ``flowbus.api.server`` for it: this package itself loads nothing,
so the daemons that never serve it (agents) do not pay for the web stack.
"""
