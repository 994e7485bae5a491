"""`mlpbp playground`: a local web page that trains a network live (mlpbp.playground)."""

from __future__ import annotations

import typer

from mlpbp.cli.app import command, err, fail

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


@command
def playground(
    port: int = typer.Option(8000, "--port", help="Port to listen on (0: any free port)."),
    host: str = typer.Option(
        "127.0.0.1", "--host", help="Address to bind; anything but 127.0.0.1 lets others on the network use it."
    ),
    open_browser: bool = typer.Option(False, "--open", help="Open the page in the default browser."),
    max_sessions: int = typer.Option(32, "--max-sessions", min=1, help="Most tabs trained at once."),
    idle_timeout: float = typer.Option(
        1800.0, "--idle-timeout", min=1.0, help="Seconds a tab may send nothing before its session ends."
    ),
) -> None:
    """Start a local web page that trains a network live: data sets, decision regions of the
    output and every hidden unit, loss curves, gradient norms, the top Hessian eigenvalue beside
    2/α, one example's forward and backward pass, gradcheck, and a YAML `mlpbp train` reproduces.
    Stop it with Ctrl-C."""
    try:
        import starlette  # noqa: F401
        import uvicorn
    except ImportError:
        fail("mlpbp playground needs its web server: pip install 'mlpbp[playground]'")
    from mlpbp.playground.app import create_app
    from mlpbp.playground.session import Limits
    from mlpbp.run.threads import blas_thread_limit

    if not 0 <= port <= 65535:
        fail(f"--port {port} is outside 0 .. 65535")
    import socket  # here, not at the top: every `mlpbp --help` loads this module
    import threading
    import webbrowser

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        fail(f"cannot listen on {host}:{port}: {e.strerror or e}; choose another --port or --host")
    sock.listen(128)
    bound = sock.getsockname()[1]
    if host not in LOCAL_HOSTS:
        err.print(
            f"[bold yellow]warning:[/] listening on {host}: anyone who can reach this machine on the network"
            " can use the playground (and its CPU); the default --host 127.0.0.1 keeps it to this machine",
            soft_wrap=True,
        )
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    url = f"http://{'[' + shown + ']' if ':' in shown else shown}:{bound}/"
    typer.echo(f"mlpbp playground at {url} (Ctrl-C stops it)", err=False)
    limits = Limits(max_sessions=max_sessions, idle_timeout_s=idle_timeout)
    config = uvicorn.Config(create_app(limits), log_level="warning", ws="auto")
    server = uvicorn.Server(config)
    if open_browser:
        threading.Timer(0.5, webbrowser.open, args=(url,)).start()
    # One BLAS thread per step: the sessions are many small networks, not one big one.
    with blas_thread_limit(1):
        server.run(sockets=[sock])
