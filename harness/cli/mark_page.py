"""The local page of `harness keypoints annotate` without --source: shows one image, the user
clicks each named point, undoes, saves. The standard library's http.server is enough for one
user on 127.0.0.1 (no web framework to install); the page is one file with inline script and
style, so nothing is fetched from the internet. The caller decides what a save does (``save``)."""
from __future__ import annotations

import io
import json
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Callable

from PIL import Image

from ..core.errors import EXPECTED_ERRORS

PAGE = Path(__file__).with_name("mark_page.html")
MAX_BODY = 1 << 16  # a save is a few names and numbers


@dataclass
class MarkPage:
    """What the page shows and what saving does: ``save(points)`` checks the clicked points
    ({name: [x, y]}), stores them and returns what to tell the user (``name``, ``path``, ``next``);
    a user error raises one of the expected errors, whose message the page shows."""

    dataset: str
    image_id: str
    names: tuple[str, ...]
    picture: Image.Image
    save: Callable[[object], dict]

    def html(self) -> bytes:
        config = {"dataset": self.dataset, "image_id": self.image_id, "names": list(self.names),
                  "width": self.picture.width, "height": self.picture.height}
        text = json.dumps(config).replace("</", "<\\/")  # a name cannot end the script element
        return PAGE.read_text(encoding="utf-8").replace("/*CONFIG*/", text, 1).encode("utf-8")

    def png(self) -> bytes:
        out = io.BytesIO()
        self.picture.convert("RGB").save(out, format="PNG")
        return out.getvalue()


class MarkServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, page: MarkPage, port: int = 0):
        super().__init__(("127.0.0.1", port), _Handler)
        self.page = page
        self.result: dict | None = None  # the save's answer, once the user saved
        self._png = page.png()  # encoded once: every reload of the page asks for it

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/"

    def serve_until_saved(self) -> dict:
        """Serve until a save succeeded; returns its answer."""
        self.serve_forever(poll_interval=0.2)
        self.server_close()
        return self.result


class _Handler(BaseHTTPRequestHandler):
    server: MarkServer

    def log_message(self, format, *args):  # noqa: A002 - the base class's name; requests are not logged
        pass

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def _json(self, status: int, answer: dict) -> None:
        self._send(status, json.dumps(answer).encode("utf-8"), "application/json")

    def do_GET(self):  # noqa: N802 - http.server's name
        path = self.path.split("?", 1)[0]
        if path in ("/", "/index.html"):
            self._send(200, self.server.page.html(), "text/html; charset=utf-8")
        elif path == "/image.png":
            self._send(200, self.server._png, "image/png")
        else:
            self._json(404, {"error": f"no page {path}; open /"})

    def do_POST(self):  # noqa: N802 - http.server's name
        if self.path.split("?", 1)[0] != "/save":
            self._json(404, {"error": f"nothing to post at {self.path}; save posts to /save"})
            return
        if self.server.result is not None:
            self._json(409, {"error": "already saved; start `harness keypoints annotate` again to mark anew"})
            return
        points, problem = self._points()
        if problem:
            self._json(400, {"error": problem})
            return
        try:
            answer = self.server.page.save(points)
        except EXPECTED_ERRORS as exc:
            self._json(400, {"error": str(exc)})
            return
        self.server.result = answer
        self._json(200, answer)
        # stop serving once this answer is out (shutdown waits for serve_forever, in another thread)
        threading.Thread(target=self.server.shutdown, daemon=True).start()

    def _points(self) -> tuple[object, str | None]:
        """The posted {"points": {...}}, or why the request is refused."""
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            return None, "bad Content-Length"
        if not 0 < length <= MAX_BODY:
            return None, f"the body must be JSON of 1 to {MAX_BODY} bytes, got {length}"
        try:
            body = json.loads(self.rfile.read(length).decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            return None, f"the body is not JSON: {exc}"
        if not isinstance(body, dict) or "points" not in body:
            return None, 'the body must be {"points": {"<name>": [x, y], ...}}'
        return body["points"], None
