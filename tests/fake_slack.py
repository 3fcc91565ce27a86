"""A fake Slack Web API on 127.0.0.1 for tests: a real HTTP server in a thread.

Implements what benchrunner.notify.slack uses:

  POST /api/chat.postMessage              JSON body; answers ok, channel id, ts
  POST /api/files.getUploadURLExternal    form body; answers upload_url (this server) and file_id
  POST /upload/<file_id>                  raw bytes or multipart form; stores the file's bytes
  POST /api/files.completeUploadExternal  form body; shares the uploaded files

Usage:

    with FakeSlack(token="xoxb-...", fail={"chat.postMessage": [(429, {"Retry-After": "1"})]}) as slack:
        post_report(..., api_url=slack.api_url)
        slack.calls("chat.postMessage")   # recorded requests, in order

`fail` maps a method ("chat.postMessage", "files.getUploadURLExternal", "upload",
"files.completeUploadExternal") to a script of replies used before the normal answer,
one per request: (status, headers) or (status, headers, body), body a dict (sent as
JSON) or bytes. A list runs out, then requests succeed; `forever(500)` never runs out.
With `token` set, API calls without "Authorization: Bearer <token>" get invalid_auth.

`trickle` maps a method to seconds per byte: its answers (status line, headers, body) are
written one byte at a time, each within any per-read socket timeout (a hostile or broken
proxy). `trickle_padding` adds that many spaces to a trickled JSON body, so a trickled
answer lasts long enough to show whether a deadline holds.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
import zlib
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Iterable, Iterator
from urllib.parse import parse_qs

MAX_BODY_BYTES = 64 * 1024 * 1024
DEFAULT_ERRORS = {429: "ratelimited", 500: "internal_error", 502: "bad_gateway", 503: "service_unavailable"}


def forever(status: int, headers: dict | None = None, body: dict | bytes | None = None) -> Iterator[tuple]:
    """A failure script that never runs out."""
    return itertools.repeat((status, headers or {}, body))


@dataclass
class Recorded:
    method: str  # "chat.postMessage", ..., or "upload"
    path: str
    headers: dict[str, str]
    body: bytes
    json: dict | None = None
    form: dict[str, str] | None = None
    file_bytes: bytes | None = None  # for "upload": the file's bytes, raw or from the multipart part
    status: int = 0  # what the fake answered
    reply: dict | bytes | None = None
    at: float = field(default_factory=time.monotonic)


def parse_multipart(body: bytes, content_type: str) -> dict[str, bytes]:
    """Parts of a multipart/form-data body by field name, bytes exactly as sent."""
    boundary = None
    for piece in content_type.split(";")[1:]:
        key, _, value = piece.strip().partition("=")
        if key.lower() == "boundary":
            boundary = value.strip('"')
    if not boundary:
        raise ValueError("multipart body without a boundary")
    delimiter = b"--" + boundary.encode("ascii")
    parts: dict[str, bytes] = {}
    for chunk in body.split(delimiter)[1:]:
        if chunk.startswith(b"--"):
            break  # the closing delimiter
        chunk = chunk[2:] if chunk.startswith(b"\r\n") else chunk
        head, sep, content = chunk.partition(b"\r\n\r\n")
        if not sep:
            continue
        if content.endswith(b"\r\n"):
            content = content[:-2]  # the CRLF belongs to the next delimiter
        name = None
        for line in head.decode("utf-8", "replace").split("\r\n"):
            if line.lower().startswith("content-disposition:"):
                for attr in line.split(";")[1:]:
                    k, _, v = attr.strip().partition("=")
                    if k == "name":
                        name = v.strip('"')
        if name is not None:
            parts[name] = content
    return parts


class FakeSlack:
    def __init__(self, *, token: str | None = None, fail: dict[str, Iterable[tuple]] | None = None,
                 trickle: dict[str, float] | None = None, trickle_padding: int = 0):
        self.token = token
        self.trickle = dict(trickle or {})
        self.trickle_padding = trickle_padding
        self._scripts = {method: iter(script) for method, script in (fail or {}).items()}
        self.requests: list[Recorded] = []
        self.uploads: dict[str, bytes] = {}  # file_id -> bytes received
        self._pending: dict[str, dict] = {}  # file_id -> getUploadURLExternal arguments
        self._lock = threading.Lock()
        self._counter = itertools.count(1)
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ---------------------------------------------------------------- lifecycle

    def __enter__(self) -> "FakeSlack":
        fake = self

        class Handler(BaseHTTPRequestHandler):
            timeout = 10  # seconds per socket operation: a stuck client cannot hold a thread

            def do_POST(self) -> None:  # noqa: N802
                fake._handle(self)

            def do_GET(self) -> None:  # noqa: N802
                fake._reply(self, 405, {}, {"ok": False, "error": "method_not_allowed"})

            def log_message(self, format: str, *args: Any) -> None:  # keep test output clean
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        assert self._server is not None and self._thread is not None
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    @property
    def base_url(self) -> str:
        assert self._server is not None, "use FakeSlack as a context manager"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def api_url(self) -> str:
        return self.base_url + "/api/"

    def calls(self, method: str) -> list[Recorded]:
        with self._lock:
            return [r for r in self.requests if r.method == method]

    # ---------------------------------------------------------------- requests

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        path = h.path.split("?", 1)[0]
        length = h.headers.get("Content-Length")
        if length is None or not length.isdigit() or int(length) > MAX_BODY_BYTES:
            self._reply(h, 411, {}, {"ok": False, "error": "length_required"})
            return
        body = h.rfile.read(int(length))
        headers = {k: v for k, v in h.headers.items()}
        if path.startswith("/api/"):
            method = path[len("/api/"):]
        elif path.startswith("/upload/"):
            method = "upload"
        else:
            method = path
        rec = Recorded(method=method, path=path, headers=headers, body=body)
        ctype = h.headers.get("Content-Type", "")
        try:
            if method == "upload":
                if ctype.startswith("multipart/form-data"):
                    parts = parse_multipart(body, ctype)
                    rec.file_bytes = parts.get("file", next(iter(parts.values()), b""))
                else:
                    rec.file_bytes = body
            elif ctype.startswith("application/json"):
                rec.json = json.loads(body or b"{}")
            elif ctype.startswith("multipart/form-data"):
                rec.form = {k: v.decode("utf-8") for k, v in parse_multipart(body, ctype).items()}
            else:
                rec.form = {k: v[0] for k, v in parse_qs(body.decode("utf-8")).items()}
        except ValueError as err:
            self._record_and_reply(h, rec, 400, {}, {"ok": False, "error": f"bad_body: {err}"})
            return

        with self._lock:
            scripted = next(self._scripts[method], None) if method in self._scripts else None
        if scripted is not None:
            status, extra_headers, *rest = scripted
            reply = rest[0] if rest and rest[0] is not None else {
                "ok": False, "error": DEFAULT_ERRORS.get(status, f"http_{status}")
            }
            self._record_and_reply(h, rec, status, extra_headers, reply)
            return

        if method != "upload" and self.token is not None:
            if headers.get("Authorization") != f"Bearer {self.token}":
                self._record_and_reply(h, rec, 200, {}, {"ok": False, "error": "invalid_auth"})
                return
        answer = {
            "chat.postMessage": self._post_message,
            "files.getUploadURLExternal": self._get_upload_url,
            "upload": self._upload,
            "files.completeUploadExternal": self._complete_upload,
        }.get(method)
        if answer is None:
            self._record_and_reply(h, rec, 404, {}, {"ok": False, "error": "unknown_method"})
            return
        status, reply = answer(rec)
        self._record_and_reply(h, rec, status, {}, reply)

    def _post_message(self, rec: Recorded) -> tuple[int, dict | bytes]:
        args = rec.json if rec.json is not None else (rec.form or {})
        channel = str(args.get("channel") or "")
        if not channel:
            return 200, {"ok": False, "error": "channel_not_found"}
        if not args.get("text") and not args.get("blocks"):
            return 200, {"ok": False, "error": "no_text"}
        is_id = channel.isalnum() and channel.isupper()
        channel_id = channel if is_id else f"C0FAKE{zlib.crc32(channel.encode()) % 10**6:06d}"
        ts = f"{1700000000 + next(self._counter)}.000100"
        return 200, {"ok": True, "channel": channel_id, "ts": ts, "message": {"text": args.get("text")}}

    def _get_upload_url(self, rec: Recorded) -> tuple[int, dict | bytes]:
        args = rec.form or {}
        if not args.get("filename") or not str(args.get("length", "")).isdigit():
            return 200, {"ok": False, "error": "invalid_arguments"}
        file_id = f"F0FAKE{next(self._counter):04d}"
        with self._lock:
            self._pending[file_id] = dict(args)
        return 200, {"ok": True, "upload_url": f"{self.base_url}/upload/{file_id}", "file_id": file_id}

    def _upload(self, rec: Recorded) -> tuple[int, dict | bytes]:
        file_id = rec.path[len("/upload/"):]
        with self._lock:
            if file_id not in self._pending:
                return 404, b"unknown upload"
            self.uploads[file_id] = rec.file_bytes or b""
        return 200, f"OK - {len(rec.file_bytes or b'')}".encode()

    def _complete_upload(self, rec: Recorded) -> tuple[int, dict | bytes]:
        args = rec.form or {}
        try:
            files = json.loads(args.get("files", ""))
        except ValueError:
            return 200, {"ok": False, "error": "invalid_arguments"}
        with self._lock:
            if not files or any(f.get("id") not in self.uploads for f in files):
                return 200, {"ok": False, "error": "file_not_found"}
        return 200, {"ok": True, "files": [{"id": f["id"], "title": f.get("title")} for f in files]}

    # ---------------------------------------------------------------- replies

    def _record_and_reply(self, h, rec: Recorded, status: int, headers: dict, body: dict | bytes) -> None:
        rec.status, rec.reply = status, body
        with self._lock:
            self.requests.append(rec)
        self._reply(h, status, headers, body, trickle_s=self.trickle.get(rec.method))

    def _reply(self, h: BaseHTTPRequestHandler, status: int, headers: dict, body: dict | bytes,
               trickle_s: float | None = None) -> None:
        if isinstance(body, bytes):
            data, ctype = body, "text/plain; charset=utf-8"
        else:
            data, ctype = json.dumps(body).encode("utf-8"), "application/json; charset=utf-8"
            if trickle_s:
                data += b" " * self.trickle_padding
        if trickle_s:
            h.wfile = _TrickleWriter(h.wfile, trickle_s)
        h.send_response(status)
        h.send_header("Content-Type", ctype)
        h.send_header("Content-Length", str(len(data)))
        for k, v in headers.items():
            h.send_header(k, v)
        h.end_headers()
        h.wfile.write(data)


class _TrickleWriter:
    """Writes one byte per ``seconds``; stops quietly when the client has gone."""

    def __init__(self, raw, seconds: float):
        self._raw, self._seconds = raw, seconds

    def write(self, data: bytes) -> int:
        for i in range(len(data)):
            try:
                self._raw.write(data[i:i + 1])
                self._raw.flush()
            except OSError:
                return i
            time.sleep(self._seconds)
        return len(data)

    def flush(self) -> None:
        try:
            self._raw.flush()
        except OSError:
            pass

    def __getattr__(self, name: str):
        return getattr(self._raw, name)
