"""Serve an Optuna storage with optuna-dashboard on 127.0.0.1 (`python -m ensemble.tune --cfg X --dashboard`).

optuna-dashboard is an optional dependency (the `dashboard` extra, installed by the README's first
command). The server listens on the loopback interface only; from another machine, forward the port
(`ssh -L 8080:127.0.0.1:8080 host`).
"""
from __future__ import annotations

import logging
import socketserver
import threading
from dataclasses import dataclass
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

logger = logging.getLogger(__name__)

HOST = "127.0.0.1"
DEFAULT_PORT = 8080
INSTALL = "pip install -e '.[dashboard]' (or pip install optuna-dashboard)"


class DashboardError(RuntimeError):
    """optuna-dashboard is missing, or the port cannot be opened."""


def command(where: str) -> str:
    """The stand-alone command for a printable storage location (journal path or masked URL)."""
    return f"optuna-dashboard {where if '://' not in where else repr(where)}"  # its default host is 127.0.0.1


def _app(storage):
    try:
        from optuna_dashboard import wsgi
    except ImportError:
        raise DashboardError(f"optuna-dashboard is not installed: {INSTALL}") from None
    return wsgi(storage)


class _Quiet(WSGIRequestHandler):
    def log_message(self, *args):  # one line per request would drown the tuning log
        pass


class _ThreadingServer(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True  # not joined on close: an idle browser socket must not hold up Ctrl-C


@dataclass
class Dashboard:
    server: WSGIServer
    thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.server.server_address[1]}/dashboard"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        if self.thread is not None:
            self.thread.join(timeout=10)


def start(storage, port: int = DEFAULT_PORT, background: bool = True) -> Dashboard:
    """Serve `storage` (an Optuna storage object or URL) on 127.0.0.1:port (0: any free port).
    background: in a daemon thread (stop() ends it); else call .server.serve_forever() yourself."""
    app = _app(storage)
    try:
        server = make_server(HOST, port, app, server_class=_ThreadingServer, handler_class=_Quiet)
    except OSError as e:
        raise DashboardError(f"cannot serve the dashboard on {HOST}:{port}: {e.strerror or e} "
                             f"(another one running? try --port 0 for any free port)") from None
    dash = Dashboard(server)
    if background:
        dash.thread = threading.Thread(target=server.serve_forever, name="optuna-dashboard", daemon=True)
        dash.thread.start()
    return dash


def serve(storage, where: str, port: int = DEFAULT_PORT) -> int:
    """Serve until Ctrl-C (SIGINT) or SIGTERM. -> exit code."""
    import signal

    def _stop(signum, frame):
        raise KeyboardInterrupt

    # Both handlers are set here, before the URL is printed, and both signals unblocked: a process
    # started with SIGINT ignored or blocked (a shell script's `&`, a job runner) would not stop.
    stops = (signal.SIGINT, signal.SIGTERM)
    old = {s: signal.signal(s, _stop) for s in stops}
    old_mask = signal.pthread_sigmask(signal.SIG_UNBLOCK, stops)
    dash = None
    try:
        dash = start(storage, port, background=False)
        logger.info(f"dashboard of {where}: {dash.url} (127.0.0.1 only; Ctrl-C stops it)")
        dash.server.serve_forever()
    except KeyboardInterrupt:
        logger.info("dashboard stopped")
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
        for s, handler in old.items():
            signal.signal(s, handler)
        if dash is not None:
            dash.server.server_close()
    return 0
