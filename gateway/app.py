"""The FastAPI application: routers gathered in one place, problem handlers and middleware."""

from __future__ import annotations

from fastapi import FastAPI

from gateway import API_VERSION, __version__
from gateway.api import audit, authzen, cases, docs_page, exchanges, openapi, ops, policies, problems
from gateway.api.limits import BodyLimits
from gateway.api.middleware import Conventions
from gateway.api.witnesses import router as witnesses_router
from gateway.auth import auth_router
from gateway.console import mount_console
from gateway.policy.admin import PolicyWatcher
from gateway.runtime import Runtime
from gateway.settings import Settings, get_settings


def create_app(settings: Settings | None = None, runtime: Runtime | None = None) -> FastAPI:
    """Build the gateway app around a runtime (made from ``settings`` when not given)."""
    rt = runtime or Runtime(settings or get_settings())
    app = FastAPI(
        title="Veilig Delen gateway",
        version=API_VERSION,
        summary="Purpose-bound sharing of case information on domestic violence and child abuse",
        contact={"name": "Veilig Delen", "url": "https://veilig-delen.example"},
        openapi_url="/v1/openapi.json",
        docs_url=None,  # served by docs_page, without a CDN
        redoc_url=None,
        generate_unique_id_function=openapi.operation_id,
    )
    app.state.runtime = rt
    app.state.auth = rt.auth
    problems.install(app)

    # Added first, so it runs inside the conventions: its 413 and 400 carry the usual headers too.
    app.add_middleware(BodyLimits, max_body_bytes=rt.settings.max_body_bytes)
    app.add_middleware(Conventions, runtime=rt)

    app.include_router(auth_router)
    app.include_router(cases.router)
    app.include_router(exchanges.router)
    app.include_router(audit.router)
    app.include_router(witnesses_router)
    app.include_router(policies.router)
    app.include_router(authzen.router)
    app.include_router(ops.router)
    mount_console(app, rt)
    app.state.version = __version__
    openapi.install(app, rt)
    docs_page.install(app)
    if rt.settings.policy_watch:  # off by default: reloads are explicit unless an operator opts in
        watcher = PolicyWatcher(rt, interval=rt.settings.policy_watch_interval)
        watcher.start()
        app.state.policy_watcher = watcher
        app.router.on_shutdown.append(watcher.stop)
    if rt.settings.policy_follow:  # replicas: serve the revision activated last on any of them
        from gateway.policy.follow import PolicyFollower

        follower = PolicyFollower(rt, interval=rt.settings.policy_follow_interval)
        app.router.on_startup.append(follower.start)
        app.router.on_shutdown.append(follower.stop)
        app.state.policy_follower = follower
    return app
