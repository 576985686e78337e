"""STAND-INS: processes that play a part this machine has no real one for. Never used in production.

- `standins.opa`: a stand-in for an OPA server (the OPA sidecar's REST API over the embedded engine);
- `standins.agency`: a stand-in for an agency system behind the HTTP connector;
- `standins.local_server`: runs a gateway or stand-in app on a loopback socket in a thread (the demo,
  tests and benchmarks).
"""
