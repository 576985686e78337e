"""The HTTP surface: routers gathered in one place, problem handlers, middleware."""
