"""A Prefect server that answers only its own origin: ``python -m flows.server [--port 4200]``.

``make ui``, the temporary server of ``make run`` (:class:`flows.local.TemporaryServer`) and
the served stack (``infra/stack.py``) start Prefect through this module instead of
``prefect server start``, because Prefect's defaults let any web page in the user's browser
drive the API on loopback (``access-control-allow-origin: *``, any ``Host``). Here:

* CORS: ``PREFECT_SERVER_API_CORS_ALLOWED_ORIGINS`` is the server's own origin(s)
  (``http://127.0.0.1:<port>``, ``http://localhost:<port>``), unless the user set it;
* a request or websocket whose ``Origin`` header is another origin is refused (403), since
  CORS alone only hides the response of a "simple" cross-site POST, it does not stop it;
* a ``Host`` header other than the server's own names is refused (400; Starlette's
  ``TrustedHostMiddleware``): no DNS rebinding. More names: ``REPROLAB_ALLOWED_HOSTS``
  (comma-separated) or ``--allow-host``;
* credentials, where wanted (the served stack), are Prefect's own basic auth:
  ``PREFECT_SERVER_API_AUTH_STRING`` in this process's environment.

While it runs, a non-temporary server records itself in ``$PREFECT_HOME/reprolab-server.json``
(pid and API URL), which is how ``make run`` and ``make serve`` find the project's server.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import time
from typing import Any

from flows import local
from tasks.platform.process import pid_alive

LOOPBACK_NAMES = ("127.0.0.1", "localhost")


def own_hosts(host: str, extra: list[str]) -> list[str]:
    """Host names (no port) this server answers to."""
    names = [host] if host not in ("0.0.0.0", "::", "") else []
    names += [*LOOPBACK_NAMES, *extra]
    names += [h.strip() for h in os.environ.get("REPROLAB_ALLOWED_HOSTS", "").split(",") if h.strip()]
    return list(dict.fromkeys(names))


def own_origins(hosts: list[str], port: int) -> list[str]:
    return [f"http://{h}:{port}" for h in hosts]


class OriginGuard:
    """ASGI middleware: refuse (403) any HTTP request or websocket whose ``Origin`` is foreign.

    Requests without an ``Origin`` header (the Prefect client, curl, same-origin GETs) pass.
    """

    def __init__(self, app: Any, allowed_origins: list[str]):
        self.app = app
        self.allowed = {o.rstrip("/") for o in allowed_origins}

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] in ("http", "websocket"):
            origin = dict(scope.get("headers") or []).get(b"origin")
            if origin is not None and origin.decode("latin-1").rstrip("/") not in self.allowed:
                from starlette.responses import PlainTextResponse

                await PlainTextResponse("Forbidden origin", status_code=403)(scope, receive, send)
                return
        await self.app(scope, receive, send)


def build_app(host: str, port: int, extra_hosts: list[str], ephemeral: bool = False):
    """Prefect's server app wrapped in the origin and host checks (call after env is set)."""
    from prefect.server.api.server import create_app
    from starlette.middleware.trustedhost import TrustedHostMiddleware

    hosts = own_hosts(host, extra_hosts)
    app = create_app(final=True, ephemeral=ephemeral)
    app = OriginGuard(app, own_origins(hosts, port))
    return TrustedHostMiddleware(app, allowed_hosts=hosts)


def _exit_with(pid: int, interval: float = 1.0) -> None:
    """Send this process SIGTERM (uvicorn's clean shutdown) once process ``pid`` is gone."""
    import signal
    import threading
    import time

    def watch() -> None:
        while pid_alive(pid):
            time.sleep(interval)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="exit-with", daemon=True).start()


def _port_free(host: str, port: int, wait: float = 15.0) -> bool:
    """Whether the server could bind ``port``, as uvicorn binds it (``SO_REUSEADDR``, so the
    TIME_WAIT connections a just-stopped server leaves do not count); a port still held by a
    server that is shutting down gets ``wait`` seconds to be released."""
    deadline = time.monotonic() + wait
    while True:
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((host, port))
                return True
            except OSError:
                if time.monotonic() >= deadline:
                    return False
        time.sleep(0.5)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m flows.server", description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=local.DEFAULT_PORT)
    ap.add_argument("--allow-host", action="append", default=[], help="another Host name to accept")
    ap.add_argument("--no-ui", action="store_true", help="API only (no dashboard)")
    ap.add_argument("--temporary", action="store_true", help="a server for one run (Prefect's ephemeral mode, not recorded)")
    ap.add_argument("--no-record", action="store_true", help="do not record this server as the project's (the stack)")
    ap.add_argument("--exit-with", type=int, default=None, metavar="PID",
                    help="stop when process PID is gone (a run's temporary server outlives no `kill -9` of it)")
    args = ap.parse_args(argv)
    record = not (args.temporary or args.no_record)
    if args.exit_with:
        _exit_with(args.exit_with)

    local.configure()
    hosts = own_hosts(args.host, args.allow_host)
    os.environ.setdefault("PREFECT_SERVER_API_CORS_ALLOWED_ORIGINS", ",".join(own_origins(hosts, args.port)))
    if args.no_ui:
        os.environ["PREFECT_SERVER_UI_ENABLED"] = "false"
    if not _port_free(args.host, args.port):
        print(f"error: port {args.port} on {args.host} is already in use (another `make ui`?); "
              f"stop it or choose another port with --port", file=sys.stderr)
        return 2
    import uvicorn

    app = build_app(args.host, args.port, args.allow_host, ephemeral=args.temporary)
    url = f"http://{'127.0.0.1' if args.host in ('0.0.0.0', '') else args.host}:{args.port}"
    state = local.prefect_home() / local.STATE_FILE
    if record:
        state.parent.mkdir(parents=True, exist_ok=True)
        tmp = state.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"pid": os.getpid(), "api_url": f"{url}/api", "ui_url": url}))
        os.replace(tmp, state)
        print(f"Prefect server for {local.prefect_home()}: UI {url}  API {url}/api "
              f"(PREFECT_API_URL={url}/api)", flush=True)
    try:
        uvicorn.run(app, host=args.host, port=args.port, log_level="warning" if args.temporary else "info",
                    timeout_graceful_shutdown=3)
    finally:
        if record:
            try:
                if json.loads(state.read_text()).get("pid") == os.getpid():
                    state.unlink()
            except (OSError, ValueError):
                pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
