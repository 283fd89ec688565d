"""create_app(): config -> db -> http sessions -> extensions -> blueprints -> error handlers -> lifespan."""

from __future__ import annotations

import importlib
import logging
import time
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from quart import Quart, Request, Response, g, jsonify, render_template, request
from quart_schema import QuartSchema, RequestSchemaValidationError
from sqlalchemy.exc import DBAPIError, OperationalError
from werkzeug.exceptions import HTTPException

from backend import __version__
from backend.auth.guard import enforce_auth
from backend.config import Config, load_config
from backend.db import Database
from backend.edge import body_limit, wants_json
from backend.errors import AppError
from backend.http import HttpSessions
from backend.keys import Keyring, load_or_create_secret
from backend.observability import LoopLagMonitor, Metrics, access_log, redact_target
from backend.runtime import AppServices
from backend.settings import service as settings_service
from backend.tasks.broker import TaskQueueBroker

log = logging.getLogger(__name__)

FRONTEND = Path(__file__).resolve().parent.parent / "frontend"

BACKEND = Path(__file__).resolve().parent

#: Per-domain module names, imported by convention so a new domain needs no edit here:
#: tables, settings and jobs register themselves at import; api/pages modules export a blueprint `bp`.
DOMAIN_PARTS = ("models", "settings", "jobs")
BLUEPRINT_PARTS = ("api", "pages")


def _domain_packages() -> list[str]:
    return sorted(p.name for p in BACKEND.iterdir() if p.is_dir() and (p / "__init__.py").exists())


def load_domains() -> None:
    """Import every domain's models, settings and jobs (Alembic and the app both need all of them)."""
    for pkg in _domain_packages():
        for part in DOMAIN_PARTS:
            if (BACKEND / pkg / f"{part}.py").exists():
                importlib.import_module(f"backend.{pkg}.{part}")


def _blueprint_modules() -> list[str]:
    names = []
    for pkg in _domain_packages():
        for part in BLUEPRINT_PARTS:
            if (BACKEND / pkg / f"{part}.py").exists():
                names.append(f"backend.{pkg}.{part}")
    return names


def _request_class(config: Config) -> type[Request]:
    class TicRequest(Request):
        """Caps each body while it is read (chunked ones too): small for the API, large for uploads."""

        def __init__(self, method: str, scheme: str, path: str, *args: Any, **kwargs: Any) -> None:
            kwargs["max_content_length"] = body_limit(path, config.max_json_bytes, config.max_upload_bytes)
            super().__init__(method, scheme, path, *args, **kwargs)

    return TicRequest


def create_app(overrides: dict[str, Any] | None = None) -> Quart:
    config = load_config(overrides)
    load_domains()
    app = Quart(
        "tic",
        template_folder=str(FRONTEND / "templates"),
        static_folder=str(FRONTEND / "static"),
        static_url_path="/static",
    )
    app.config.update(
        MAX_CONTENT_LENGTH=config.max_upload_bytes,
        TESTING=config.testing,
        PROPAGATE_EXCEPTIONS=False,
        SECRET_KEY=None,
    )
    app.request_class = _request_class(config)
    config.data_dir.mkdir(parents=True, exist_ok=True)
    keyring = Keyring(load_or_create_secret(config.data_dir))
    # Quart's signed cookie (used only for flash messages) gets a key derived from the app secret.
    app.secret_key = keyring.keyed_hash("flash", "quart").encode()
    db = Database(config.resolved_database_url)
    broker = TaskQueueBroker(db)
    svc = AppServices(config=config, db=db, keyring=keyring, http=HttpSessions(), broker=broker)
    broker.services = svc
    metrics = Metrics()
    svc.extras["metrics"] = metrics
    broker.on_finish.append(lambda name, status: metrics.task_runs.labels(name, status).inc())
    app.extensions["tic"] = svc

    QuartSchema(
        app,
        info={"title": "TIC", "version": __version__},
        openapi_path="/openapi.json",
        swagger_ui_path=None,
        redoc_ui_path=None,
        scalar_ui_path=None,
        security_schemes={
            "cookie": {"type": "apiKey", "in_": "cookie", "name": "tic_session"},
            "bearer": {"type": "http", "scheme": "bearer"},
        },
        security=[{"cookie": []}, {"bearer": []}],
    )
    for name in _blueprint_modules():
        module = importlib.import_module(name)
        if hasattr(module, "bp"):
            app.register_blueprint(module.bp)

    _install_request_hooks(app, metrics)
    _install_error_handlers(app)
    _install_lifespan(app, svc, config)
    return app


def _install_request_hooks(app: Quart, metrics: Metrics) -> None:
    @app.before_request
    async def start_timer() -> None:
        g.started = time.perf_counter()

    app.before_request(enforce_auth)

    @app.after_request
    async def record(response: Response) -> Response:
        elapsed = time.perf_counter() - g.get("started", time.perf_counter())
        rule = request.url_rule.rule if request.url_rule is not None else "<unmatched>"
        metrics.requests.labels(request.method, rule, str(response.status_code)).inc()
        metrics.latency.labels(request.method, rule).observe(elapsed)
        access_log.info(
            '%s "%s %s" %d %.1fms',
            request.remote_addr,
            request.method,
            redact_target(request.full_path.rstrip("?")),
            response.status_code,
            elapsed * 1000,
        )
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        if response.mimetype == "text/html":
            response.headers.setdefault("X-Frame-Options", "SAMEORIGIN")
        return response


async def _error_response(exc: AppError) -> Response:
    """JSON {code, message[, fields]} for API paths; a friendly HTML page for browser pages."""
    if wants_json():
        response = jsonify(exc.to_dict())
        response.status_code = exc.status
    else:
        titles = {
            401: "Please log in",
            403: "Not allowed",
            404: "Not found",
            429: "Slow down",
            503: "Unavailable",
        }
        body = await render_template(
            "error.html",
            user=g.get("user"),
            csrf_token=g.get("csrf_token"),
            status=exc.status,
            title=titles.get(exc.status, "Something went wrong"),
            message=exc.message,
        )
        response = Response(body, status=exc.status, content_type="text/html; charset=utf-8")
    for name, value in exc.headers.items():
        response.headers[name] = value
    return response


def _pydantic_fields(err: ValidationError) -> dict[str, str]:
    fields: dict[str, str] = {}
    for item in err.errors():
        loc = ".".join(str(p) for p in item.get("loc", ())) or "body"
        msg = item.get("msg", "invalid")
        if item.get("type") == "extra_forbidden":
            msg = "unknown field"
        fields[loc] = msg
    return fields


def _install_error_handlers(app: Quart) -> None:
    @app.errorhandler(AppError)
    async def handle_app_error(exc: AppError) -> Any:
        return await _error_response(exc)

    @app.errorhandler(RequestSchemaValidationError)
    async def handle_validation(exc: RequestSchemaValidationError) -> Any:
        inner = exc.validation_error
        if isinstance(inner, ValidationError):
            fields = _pydantic_fields(inner)
            names = ", ".join(sorted(fields))
            err = AppError(f"Invalid request: check {names}", code="INVALID", status=400, fields=fields)
        else:
            err = AppError(
                "The request body must be a JSON object (Content-Type: application/json)",
                code="INVALID_JSON",
                status=400,
            )
        return await handle_app_error(err)

    @app.errorhandler(HTTPException)
    async def handle_http(exc: HTTPException) -> Any:
        status = exc.code or 500
        codes = {
            400: ("INVALID_JSON", "The request body is not valid JSON"),
            404: ("NOT_FOUND", "No such page or API path"),
            405: ("METHOD_NOT_ALLOWED", "That method is not allowed here"),
            413: ("PAYLOAD_TOO_LARGE", "The request body is too large"),
        }
        code, message = codes.get(status, ("HTTP_ERROR", exc.description or "Request failed"))
        return await handle_app_error(AppError(message, code=code, status=status))

    def database_unavailable() -> AppError:
        return AppError(
            "The database is busy or unreachable; try again in a moment",
            code="DATABASE_UNAVAILABLE",
            status=503,
            headers={"Retry-After": "5"},
        )

    # asyncpg raises plain ConnectionErrors when PostgreSQL is down; SQLite raises OperationalError.
    @app.errorhandler(OperationalError)
    @app.errorhandler(ConnectionError)
    async def handle_db_down(exc: Exception) -> Any:
        log.warning("Database unavailable while serving %s: %s", request.path, exc)
        return await handle_app_error(database_unavailable())

    @app.errorhandler(DBAPIError)
    async def handle_db_error(exc: DBAPIError) -> Any:
        if exc.connection_invalidated:
            return await handle_db_down(exc)
        log.error("Database error while serving %s", request.path, exc_info=exc)
        return await handle_app_error(AppError("Internal error", code="INTERNAL", status=500))

    @app.errorhandler(Exception)
    async def handle_unexpected(exc: Exception) -> Any:
        log.error("Unhandled error while serving %s %s", request.method, request.path, exc_info=exc)
        return await handle_app_error(
            AppError("Internal error; the details are in the server log", code="INTERNAL", status=500)
        )


def _install_lifespan(app: Quart, svc: AppServices, config: Config) -> None:
    @app.before_serving
    async def startup() -> None:
        if config.migrate_on_start:
            await svc.db.upgrade()
        await svc.http.start()
        async with svc.db.session() as session:
            values = await settings_service.get_settings(session, svc.keyring)
        svc.broker.paused = bool(values["broker_paused"])
        svc.broker.default_timeout = float(values["task_timeout_seconds"])
        recovered = await svc.broker.recover()
        if recovered:
            log.warning("%d interrupted task(s) from the previous run were queued again", recovered)
        if svc.db.checkpointer is not None:
            svc.db.checkpointer.start()
        lag = LoopLagMonitor(svc.extras["metrics"])
        lag.start()
        svc.extras["loop_lag"] = lag
        log.info("TIC %s ready (database: %s)", __version__, svc.db.dialect)

    @app.after_serving
    async def shutdown() -> None:
        if svc.scheduler is not None and svc.scheduler.running:
            svc.scheduler.shutdown(wait=False)
        await svc.broker.shutdown()
        lag = svc.extras.get("loop_lag")
        if lag is not None:
            await lag.stop()
        await svc.http.close()
        await svc.db.dispose()
        log.info("TIC stopped")
