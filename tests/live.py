"""A real HTTP server for tests: the gateway's own loopback server helper, under the names tests use."""

from standins.local_server import free_port, reserve_socket
from standins.local_server import serve_in_thread as serve

__all__ = ["free_port", "reserve_socket", "serve"]
