"""The playground's web server: a Starlette ASGI app, one training session per browser tab.

Routes (nothing in any of them is a path on the server; the assets are a fixed list):

- ``GET /``: the page; ``GET /static/{name}``: its script and style, shipped in the package.
- ``WS /ws``: the session of one tab, created on connect and ended on disconnect or after
  ``idle_timeout_s`` without a message from the page. Messages are JSON objects with a ``type``:
  the page sends ``configure``, ``run``, ``pause``, ``step``, ``reset``, ``example``,
  ``gradcheck``, ``ping``; the server sends ``hello``, ``state``, ``frame``, ``example``,
  ``gradcheck``, ``pong``, ``error`` and ``closed``.
- ``POST /session/{id}/upload?name=FILE.csv``: a CSV as the request body.
- ``GET /session/{id}/config.yaml`` and ``/session/{id}/model.npz``: take the run with you.

Training runs in a pool of worker threads, one step batch at a time under the
session's lock, so the event loop keeps answering every tab while any of them trains.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from mlpbp.errors import MlpbpError
from mlpbp.playground.session import DEFAULTS, Limits, Session, options

STATIC = Path(__file__).resolve().parent / "static"
ASSETS = {"app.js": "text/javascript", "style.css": "text/css"}  # served by name: a fixed list
UPDATE_PERIOD_S = 1 / 15  # live updates at most 15 a second per tab
# Steps hold the GIL most of the time: more workers than cores would only take turns with the
# event loop, which must stay free to answer every tab (pings, pauses, clicks).
WORKERS = ThreadPoolExecutor(max_workers=max(1, min(4, os.cpu_count() or 1)), thread_name_prefix="playground")
MESSAGES = ("configure", "run", "pause", "step", "reset", "example", "gradcheck", "ping")


@dataclass
class Handle:
    """A session and what the server keeps beside it: its socket, lock and training task."""

    id: str
    session: Session
    socket: WebSocket
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    send_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    running: bool = False
    runner: asyncio.Task | None = None

    async def send(self, message: dict) -> None:
        text = json.dumps(message, allow_nan=False)
        async with self.send_lock:
            try:
                await self.socket.send_text(text)
            except RuntimeError:  # the tab closed while a message was on its way
                raise WebSocketDisconnect(1006) from None

    async def call(self, fn, *args):
        """Run a session method in a worker thread, one at a time per session."""
        async with self.lock:
            return await asyncio.get_running_loop().run_in_executor(WORKERS, fn, *args)


def _error(message: str, status: int) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def create_app(limits: Limits | None = None) -> Starlette:
    limits = limits or Limits()
    sessions: dict[str, Handle] = {}

    def unknown_session(sid: str) -> JSONResponse:
        return _error(
            f"no session {sid!r}: it ended (the tab closed, or it was idle for {limits.idle_timeout_s:g} s);"
            " reload the page to start a new one",
            404,
        )

    async def page(request: Request) -> Response:
        return FileResponse(STATIC / "index.html", media_type="text/html")

    async def asset(request: Request) -> Response:
        name = request.path_params["name"]
        if name not in ASSETS:
            return _error(f"no asset {name!r}", 404)
        return FileResponse(STATIC / name, media_type=ASSETS[name])

    async def upload(request: Request) -> Response:
        handle = sessions.get(request.path_params["sid"])
        if handle is None:
            return unknown_session(request.path_params["sid"])
        cap = limits.max_upload_bytes
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > cap:
            return _error(f"upload: {int(declared):,} bytes; the playground accepts files up to {cap:,}", 413)
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > cap:
                return _error(f"upload: more than {cap:,} bytes; the playground accepts files up to {cap:,}", 413)
        try:
            name = request.query_params.get("name", "upload.csv")
            state = await handle.call(handle.session.upload, name, bytes(body))
        except MlpbpError as e:
            return _error(str(e), 400)
        handle.running = False
        await handle.send(state)
        await handle.send(await handle.call(handle.session.frame))
        return JSONResponse({"ok": True, "upload": state["upload"]})

    async def download(request: Request) -> Response:
        sid, what = request.path_params["sid"], request.path_params["what"]
        handle = sessions.get(sid)
        if handle is None:
            return unknown_session(sid)
        if what == "config.yaml":
            text = await handle.call(handle.session.config_yaml)
            return Response(text, media_type="application/yaml", headers=_attachment("playground.yaml"))
        if what == "model.npz":
            data = await handle.call(handle.session.model_bytes)
            return Response(data, media_type="application/octet-stream", headers=_attachment("playground-model.npz"))
        return _error(f"no download {what!r} (config.yaml, model.npz)", 404)

    async def socket(ws: WebSocket) -> None:
        if not _same_origin(ws):  # another web site's page must not drive this server
            await ws.close(code=1008)
            return
        await ws.accept()
        if len(sessions) >= limits.max_sessions:
            await ws.send_text(
                json.dumps(
                    {
                        "type": "closed",
                        "reason": f"the server holds its maximum of {limits.max_sessions} sessions (one per tab);"
                        " close another tab or start the server with a larger --max-sessions",
                    }
                )
            )
            await ws.close(code=1013)
            return
        sid = secrets.token_urlsafe(16)
        session = await asyncio.get_running_loop().run_in_executor(WORKERS, Session, limits)
        handle = sessions[sid] = Handle(sid, session, ws)
        try:
            await handle.send({"type": "hello", "session": sid, "limits": limits.to_dict(), "options": options(),
                               "defaults": DEFAULTS})  # fmt: skip
            await handle.send(await handle.call(session.describe))
            await handle.send(await handle.call(session.frame))
            while True:
                try:
                    message = await asyncio.wait_for(ws.receive(), timeout=limits.idle_timeout_s)
                except TimeoutError:
                    reason = f"idle for {limits.idle_timeout_s:g} s without a message from the page; reload to start"
                    await handle.send({"type": "closed", "reason": reason})
                    await ws.close(code=1000)
                    return
                if message["type"] == "websocket.disconnect":
                    return
                await _handle_message(handle, message)
        except WebSocketDisconnect:
            pass
        finally:
            handle.running = False
            if handle.runner is not None:
                handle.runner.cancel()
            sessions.pop(sid, None)
            async with handle.lock:  # let a step in a worker thread finish before the files go
                session.close()

    app = Starlette(
        routes=[
            Route("/", page),
            Route("/static/{name}", asset),
            Route("/session/{sid}/upload", upload, methods=["POST"]),
            Route("/session/{sid}/{what}", download),
            WebSocketRoute("/ws", socket),
        ]
    )
    app.state.sessions = sessions
    app.state.limits = limits
    return app


def _attachment(name: str) -> dict:
    return {"Content-Disposition": f'attachment; filename="{name}"', "Cache-Control": "no-store"}


def _same_origin(ws: WebSocket) -> bool:
    origin = ws.headers.get("origin")
    return origin is None or urlsplit(origin).netloc == ws.headers.get("host")


async def _handle_message(handle: Handle, message: dict) -> None:
    """One message from the page; a bad one is answered with an ``error`` and nothing else changes."""
    session = handle.session
    try:
        text = message.get("text")
        if text is None:
            raise ValueError("messages are JSON text, not binary")
        try:
            msg = json.loads(text)
        except json.JSONDecodeError as e:
            raise ValueError(f"message is not JSON ({e.msg} at character {e.pos})") from None
        kind = msg.get("type") if isinstance(msg, dict) else None
        if kind not in MESSAGES:
            raise ValueError(f"unknown message type {kind!r} (allowed: {', '.join(MESSAGES)})")
        if kind == "ping":
            await handle.send({"type": "pong", "id": msg.get("id"), "server_time": time.time()})
        elif kind in ("configure", "reset"):
            handle.running = False
            if kind == "configure":
                await handle.send(await handle.call(session.configure, msg.get("settings", {})))
            else:
                await handle.call(session.reset)
                await handle.send(await handle.call(session.describe))
            await handle.send(await handle.call(session.frame))
        elif kind == "run":
            handle.running = True
            if handle.runner is None or handle.runner.done():
                handle.runner = asyncio.create_task(_train(handle))
        elif kind == "pause":
            handle.running = False
            await handle.send({"type": "paused", "step": session.steps})
        elif kind == "step":
            handle.running = False
            n = msg.get("steps", 1)
            if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= session.limits.max_steps_per_update:
                raise ValueError(f"step: steps {n!r} is outside 1 .. {session.limits.max_steps_per_update}")
            await handle.send(await handle.call(_advance_and_frame, session, n))
        elif kind == "example":
            await handle.send(await handle.call(session.example, msg.get("part", "train"), msg.get("index")))
        elif kind == "gradcheck":
            await handle.send(await handle.call(session.gradcheck))
    except (MlpbpError, ValueError) as e:
        await handle.send({"type": "error", "message": str(e)})


def _advance_and_frame(session: Session, n: int) -> dict:
    session.advance(n)
    return session.frame()


async def _train(handle: Handle) -> None:
    """Run: step batches and live frames, at most one frame per ``UPDATE_PERIOD_S``."""
    loop = asyncio.get_running_loop()
    session = handle.session
    try:
        while handle.running:
            started = loop.time()
            frame = await handle.call(_advance_and_frame, session, session.settings["steps_per_update"])
            await handle.send(frame)
            if frame["diverged"]:
                handle.running = False
                await handle.send({"type": "error", "message": frame["diverged"]})
            await asyncio.sleep(max(0.0, started + UPDATE_PERIOD_S - loop.time()))
    except WebSocketDisconnect:
        handle.running = False  # the tab went away mid-send; the socket handler cleans up
