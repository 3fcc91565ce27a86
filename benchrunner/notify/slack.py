"""Post a digest (and the PDF report, in its thread) to Slack.

Flow, each step retried on its own:
  1. chat.postMessage(channel, text, blocks, thread_ts)      -> ts, channel id
  2. files.getUploadURLExternal(filename, length)             -> upload_url, file_id
  3. POST the file's bytes to upload_url
  4. files.completeUploadExternal(files, channel_id, thread_ts = given thread_ts or ts)

Steps 2-4 are what slack_sdk's WebClient.files_upload_v2 does (slack_sdk 3.48,
web/client.py). We make the three calls ourselves because files_upload_v2 sends step 3
through web/internal_utils.py:_upload_file_via_v2_url, a bare urllib urlopen that
applies none of the client's retry handlers and does not check the URL's scheme; here
step 3 goes through the same retry handlers as the API calls, and only to http(s).

Retries: slack_sdk's BaseClient._perform_urllib_http_request (web/base_client.py) asks
each handler in `retry_handlers` can_retry(state, request, response, error) after every
HTTP error or failed connection, and calls prepare_for_next_attempt (which sleeps) on the
first that says yes. RetryHandler.can_retry (http_retry/handler.py) refuses once
state.current_attempt >= max_retry_count; the RetryState is shared by all handlers for
one request, so max_retries bounds the retries of each request, whatever the cause.
The built-in handlers (http_retry/builtin_handlers.py) sleep without any bound:
RateLimitErrorRetryHandler sleeps int(Retry-After) + random() seconds, whatever the
value; ServerErrorRetryHandler retries only 500 and 503, with exponential backoff plus
up to 1 s of jitter. The subclasses below keep those rules but (a) share one deadline,
max_wait_s after post_report starts, and retry only if the wait still leaves time for
another attempt, (b) also retry 502 and 504, (c) read a fractional or HTTP-date
Retry-After.

Deadlines: a socket timeout bounds each read, not a request (a server trickling a byte a
second kept a post busy for minutes). Each request (API call or upload) runs under a
_RequestDeadline of min(timeout_s, time left of max_wait_s) for the whole request, answer
included, so the whole post ends within max_wait_s. slack_sdk's WebClient opens URLs in
BaseClient._perform_urllib_http_request_internal with a bare urlopen; _DeadlineWebClient
overrides that one method.

Secrets: the token is sent only as the Authorization header of API calls (never to the
upload URL). slack_sdk 3.48 logs requests at DEBUG with Authorization "(redacted)", but
it also logs response bodies and errors verbatim; it logs to the logger we pass it, which
carries a filter that scrubs the token from every record. Every NotifyError message goes
through _scrub, and is raised `from None` so a traceback does not print slack_sdk's
exception (whose response object holds the request headers).
"""

from __future__ import annotations

import email.utils
import http.client
import io
import logging
import os
import socket
import threading
import time
from dataclasses import dataclass
from http.client import HTTPException
from pathlib import Path
from typing import Any, Iterable
from urllib.error import HTTPError
from urllib.parse import urlsplit
from urllib.request import HTTPHandler, HTTPSHandler, OpenerDirector, Request, build_opener

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError, SlackRequestError
from slack_sdk.http_retry import HttpRequest, HttpResponse, RetryHandler, RetryState
from slack_sdk.http_retry.builtin_handlers import (
    ConnectionErrorRetryHandler,
    RateLimitErrorRetryHandler,
    ServerErrorRetryHandler,
)

from benchrunner.errors import NotifyError, UserError, scrub
from benchrunner.notify.digest import Digest

API_URL_ENV = "BENCH_SLACK_API_URL"
RETRY_STATUSES = frozenset({500, 502, 503, 504})
MIN_ATTEMPT_S = 0.5  # a retry must leave at least this long for the request itself

_sdk_logger = logging.getLogger(__name__ + ".sdk")  # the logger handed to WebClient

_HINTS = {
    "channel_not_found": "check the channel name or ID",
    "not_in_channel": "invite the bot to the channel (/invite @yourbot)",
    "invalid_auth": "check the bot token",
    "not_authed": "check the bot token",
    "token_revoked": "create a new bot token",
    "account_inactive": "create a new bot token",
    "missing_scope": "give the bot the chat:write and files:write scopes",
    "ratelimited": "retry later or raise max_wait_s",
}


@dataclass(frozen=True)
class PostResult:
    channel: str  # the channel ID Slack answered with
    ts: str  # the digest message's timestamp
    file_id: str | None  # the uploaded PDF, None without one


def _scrub(text: str, secret: str | None) -> str:
    """`text` through the project's one scrubber, with the token as a known secret."""
    return scrub(text, secrets=(secret,) if secret else ())


class _ScrubFilter(logging.Filter):
    """Rewrites a log record so that neither its message nor its traceback has the secret."""

    def __init__(self, secret: str):
        super().__init__()
        self._secret = secret

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = _scrub(record.getMessage(), self._secret)
        record.args = None
        if record.exc_info:
            record.exc_text = _scrub(logging.Formatter().formatException(record.exc_info), self._secret)
            record.exc_info = None
        elif record.exc_text:
            record.exc_text = _scrub(record.exc_text, self._secret)
        if record.stack_info:
            record.stack_info = _scrub(record.stack_info, self._secret)
        return True


# --------------------------------------------------------------------------- time budget


class _Budget:
    """One deadline for a whole post_report call, and the retry count of the current step."""

    def __init__(self, max_wait_s: float, timeout_s: float):
        self.max_wait_s = max_wait_s
        self.timeout_s = timeout_s
        self.deadline = time.monotonic() + max_wait_s
        self.client: WebClient | None = None
        self.retries = 0
        self.note = ""

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    def request_timeout(self) -> float:
        return max(0.1, min(self.timeout_s, self.remaining()))

    def start_step(self, step: str) -> None:
        self.retries = 0
        self.note = ""
        if self.remaining() <= 0:
            raise NotifyError(
                f"{step} was not attempted: the max_wait_s={self.max_wait_s:g} s time budget is spent"
            )
        self._arm()

    def allows(self, wait_s: float, why: str) -> bool:
        left = self.remaining()
        if wait_s + MIN_ATTEMPT_S <= left:
            return True
        self.note = f"{why}, but only {max(left, 0):.1f} s of max_wait_s={self.max_wait_s:g} s were left"
        return False

    def sleep(self, seconds: float) -> None:
        time.sleep(max(0.0, min(seconds, self.remaining() - MIN_ATTEMPT_S)))
        self.retries += 1
        self._arm()

    def _arm(self) -> None:
        # WebClient reads self.timeout for every urlopen (base_client.py,
        # _perform_urllib_http_request_internal), so this bounds the next attempt.
        if self.client is not None:
            self.client.timeout = self.request_timeout()  # type: ignore[assignment]


class _RequestDeadline:
    """One deadline for a whole HTTP request: connect, send, status line, headers and body.

    A socket timeout bounds each read, not the request: a server that trickles one byte a
    second never trips it. This watchdog shuts the request's socket down when ``seconds``
    have passed, which ends any blocked send or read at once; the request then fails with
    a TimeoutError saying so. Use as a context manager around the request and the reading
    of its answer (an error answer's body included)."""

    def __init__(self, seconds: float):
        self.seconds = max(0.0, seconds)
        self.expired = False
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._timer = threading.Timer(self.seconds, self._expire)
        self._timer.daemon = True

    def __enter__(self) -> "_RequestDeadline":
        self._timer.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._timer.cancel()

    def watch(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.append(sock)
            if self.expired:
                _shutdown(sock)

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            for sock in self._sockets:
                _shutdown(sock)

    def error(self) -> TimeoutError:
        return TimeoutError(f"no complete answer within {self.seconds:.1f} s (the deadline of the whole request)")

    def opener(self, ssl_context=None) -> OpenerDirector:
        """An opener whose connections register their socket with this deadline."""
        return build_opener(_WatchedHTTPHandler(self), _WatchedHTTPSHandler(self, context=ssl_context))

    def connection_class(self, base: type) -> type:
        deadline = self

        class Watched(base):  # type: ignore[valid-type, misc]
            def connect(self) -> None:
                super().connect()
                deadline.watch(self.sock)

        return Watched


def _shutdown(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass  # already closed


class _WatchedHTTPHandler(HTTPHandler):
    def __init__(self, deadline: _RequestDeadline):
        super().__init__()
        self._deadline = deadline

    def http_open(self, req):
        return self.do_open(self._deadline.connection_class(http.client.HTTPConnection), req)


class _WatchedHTTPSHandler(HTTPSHandler):
    def __init__(self, deadline: _RequestDeadline, context=None):
        super().__init__(context=context)
        self._deadline = deadline

    def https_open(self, req):
        return self.do_open(self._deadline.connection_class(http.client.HTTPSConnection), req,
                            context=self._context)


def _open_within(deadline: _RequestDeadline, request: Request, timeout_s: float, ssl_context=None
                 ) -> tuple[int, Any, bytes]:
    """Send ``request`` and read its whole answer within ``deadline``: (status, headers, body).
    An HTTP error status is raised as HTTPError with its body already read (so reading it
    later cannot block); a request cut by the deadline raises the deadline's TimeoutError."""
    try:
        try:
            with deadline.opener(ssl_context).open(request, timeout=timeout_s) as resp:
                answer = resp.code, resp.headers, resp.read()
        except HTTPError as err:
            body = err.read()
            if deadline.expired:
                raise deadline.error() from None
            raise HTTPError(err.url, err.code, err.msg, err.headers, io.BytesIO(body)) from None
        if deadline.expired:  # a cut within the headers reads as a short answer, not an error
            raise deadline.error()
        return answer
    except (OSError, HTTPException) as err:
        if deadline.expired and not isinstance(err, HTTPError):
            raise deadline.error() from None
        raise


class _DeadlineWebClient(WebClient):
    """slack_sdk's WebClient with one deadline per request (its ``timeout``, which _Budget
    sets before every attempt to min(timeout_s, time left)), instead of a timeout per socket
    read. Overrides BaseClient._perform_urllib_http_request_internal (slack_sdk 3.48,
    web/base_client.py), which opens the URL and reads the answer; the retry loop around it
    is slack_sdk's own."""

    def _perform_urllib_http_request_internal(self, url: str, req: Request) -> dict[str, Any]:
        if not url.lower().startswith(("http://", "https://")):
            raise SlackRequestError(f"Invalid URL detected: {url}")
        with _RequestDeadline(float(self.timeout)) as deadline:
            status, headers, body = _open_within(deadline, req, float(self.timeout), self.ssl)
        charset = headers.get_content_charset() or "utf-8"
        text = body.decode(charset, "replace")
        if self._logger.level <= logging.DEBUG:  # as slack_sdk logs it (the token filter scrubs it)
            self._logger.debug(f"Received the following response - status: {status}, "
                               f"headers: {dict(headers)}, body: {text}")
        return {"status": status, "headers": headers, "body": text}


def _retry_after_s(response: HttpResponse) -> float:
    """Seconds from a Retry-After header (delta-seconds or HTTP-date); 1 s when absent or bad."""
    for name, values in response.headers.items():
        if name.lower() != "retry-after":
            continue
        raw = (values[0] if isinstance(values, list) else values).strip()
        try:
            return max(0.0, float(raw))
        except ValueError:
            pass
        try:
            when = email.utils.parsedate_to_datetime(raw)
            return max(0.0, when.timestamp() - time.time())
        except (TypeError, ValueError):
            return 1.0
    return 1.0


class _BoundedMixin:
    """A slack_sdk retry handler that sleeps on the shared deadline's clock (``_wait_s``, set
    by the subclass's ``_can_retry``), so no retry runs past ``max_wait_s``."""

    def __init__(self, budget: _Budget, max_retry_count: int):
        super().__init__(max_retry_count=max_retry_count)  # type: ignore[call-arg]
        self._budget = budget
        self._wait_s = 0.0

    def prepare_for_next_attempt(self, *, state, request, response=None, error=None) -> None:
        state.next_attempt_requested = True
        self._budget.sleep(self._wait_s)
        state.increment_current_attempt()


class _BoundedRateLimitHandler(_BoundedMixin, RateLimitErrorRetryHandler):
    """429: wait what Retry-After says, unless that would run past the deadline."""

    def _can_retry(self, *, state, request, response=None, error=None) -> bool:
        if not super()._can_retry(state=state, request=request, response=response, error=error):
            return False
        self._wait_s = _retry_after_s(response)  # type: ignore[arg-type]
        return self._budget.allows(self._wait_s, f"Slack asked to retry after {self._wait_s:g} s")


class _BoundedBackoffMixin(_BoundedMixin):
    """Exponential backoff (the handler's interval calculator), within the deadline."""

    interval_calculator: Any

    def _fits(self, state: RetryState, why: str) -> bool:
        self._wait_s = self.interval_calculator.calculate_sleep_duration(state.current_attempt)
        return self._budget.allows(self._wait_s, why)


class _BoundedServerErrorHandler(_BoundedBackoffMixin, ServerErrorRetryHandler):
    def _can_retry(self, *, state, request, response=None, error=None) -> bool:
        if response is None or response.status_code not in RETRY_STATUSES:
            return False
        return self._fits(state, f"HTTP {response.status_code}")


class _BoundedConnectionErrorHandler(_BoundedBackoffMixin, ConnectionErrorRetryHandler):
    def _can_retry(self, *, state, request, response=None, error=None) -> bool:
        if not super()._can_retry(state=state, request=request, response=response, error=error):
            return False
        return self._fits(state, "connection failed")


def _retry_handlers(budget: _Budget, max_retries: int) -> list[RetryHandler]:
    return [
        _BoundedConnectionErrorHandler(budget, max_retries),
        _BoundedRateLimitHandler(budget, max_retries),
        _BoundedServerErrorHandler(budget, max_retries),
    ]


# --------------------------------------------------------------------------- payloads


def _message_payload(digest: Digest, channel: str, thread_ts: str | None) -> dict:
    payload: dict[str, Any] = {"channel": channel, "text": digest.text, "blocks": digest.blocks}
    if thread_ts is not None:
        payload["thread_ts"] = thread_ts
    return payload


def _check_pdf(pdf_path: Path | None) -> Path | None:
    if pdf_path is None:
        return None
    path = Path(pdf_path)
    if not path.is_file():
        raise UserError(f"report to upload not found: {path} (build the report first, or post without it)")
    return path


def dry_run_payload(digest: Digest, *, channel: str, pdf_path: Path | None, thread_ts: str | None = None) -> dict:
    """What post_report would send, without a token or any network: the chat.postMessage
    JSON, and the file that would be uploaded into the digest's thread."""
    path = _check_pdf(pdf_path)
    file = None
    if path is not None:
        file = {
            "path": str(path),
            "filename": path.name,
            "title": path.name,
            "size_bytes": path.stat().st_size,
            "thread_ts": thread_ts,  # None: the digest message's ts, known once it is posted
        }
    return {"chat.postMessage": _message_payload(digest, channel, thread_ts), "file": file}


# --------------------------------------------------------------------------- posting


def _api_url(api_url: str | None) -> str:
    url = (api_url or os.environ.get(API_URL_ENV) or WebClient.BASE_URL).strip()
    parsed = urlsplit(url)
    if parsed.scheme.lower() not in ("http", "https") or not parsed.hostname:
        raise UserError(f"{API_URL_ENV}: {scrub(url)!r} is not a Slack API URL "
                        "(expected http:// or https:// and a host, e.g. https://slack.com/api/)")
    try:
        parsed.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        raise UserError(f"{API_URL_ENV}: {scrub(url)!r} has a bad port (expected e.g. http://127.0.0.1:8080/api/)") \
            from None
    return url if url.endswith("/") else url + "/"


def check_settings(*, token_env: str = "SLACK_BOT_TOKEN", api_url: str | None = None) -> tuple[str, str]:
    """The token and the API base URL a post would use, checked without any network: a
    malformed URL (BENCH_SLACK_API_URL) is bad input (UserError, exit 2); a missing token is
    a NotifyError (exit 4, as when a post fails). ``bench nightly`` calls this before it runs
    anything, so a night is not spent to learn either at the end."""
    base_url = _api_url(api_url)
    token = (os.environ.get(token_env) or "").strip()
    if not token:
        raise NotifyError(
            f"{token_env} is not set: export a Slack bot token with the chat:write and "
            f"files:write scopes in {token_env}"
        )
    return token, base_url


def _attempts(budget: _Budget) -> str:
    n = budget.retries + 1
    return f"after {n} attempt{'s' if n != 1 else ''}"


def _failure(step: str, what: str, budget: _Budget, token: str, posted_ts: str | None) -> NotifyError:
    message = f"{step} failed: {what} {_attempts(budget)}"
    if budget.note:
        message += f" ({budget.note})"
    if posted_ts is not None:
        message += f"; the digest itself was posted (ts {posted_ts})"
    return NotifyError(_scrub(message, token))


def _describe_api_error(err: SlackApiError) -> str:
    response = err.response
    data = response.data if isinstance(response.data, dict) else {}
    code = data.get("error")
    what = f"HTTP {response.status_code}"
    if code:
        what += f" ({code})"
        if code in _HINTS:
            what += f" - {_HINTS[code]}"
    return what


def _call(step: str, budget: _Budget, token: str, posted_ts: str | None, fn, **kwargs) -> Any:
    budget.start_step(step)
    try:
        return fn(**kwargs)
    except SlackApiError as err:
        raise _failure(step, _describe_api_error(err), budget, token, posted_ts) from None
    except (SlackClientError, OSError, HTTPException, ValueError) as err:
        raise _failure(step, f"{type(err).__name__}: {err}", budget, token, posted_ts) from None


def _upload_bytes(url: str, data: bytes, handlers: Iterable[RetryHandler], budget: _Budget) -> None:
    """POST the file's bytes to the upload URL, retried like an API call (mirrors the
    loop in slack_sdk's BaseClient._perform_urllib_http_request). Raises _UploadFailed."""
    if not url.lower().startswith(("http://", "https://")):
        raise _UploadFailed(f"Slack returned an upload_url that is not http(s): {url[:80]!r}")
    state = RetryState()
    retry_request = HttpRequest(method="POST", url=url, headers={}, data=None)
    while True:
        state.next_attempt_requested = False
        response: HttpResponse | None = None
        error: Exception
        request = Request(url, data=data, method="POST", headers={"Content-Type": "application/octet-stream"})
        try:
            with _RequestDeadline(budget.request_timeout()) as deadline:
                _open_within(deadline, request, budget.request_timeout())
            return
        except HTTPError as err:
            body = err.read()
            response = HttpResponse(
                status_code=err.code, headers={k: [v] for k, v in err.headers.items()}, data=body
            )
            error = err
        except (OSError, HTTPException) as err:
            error = err
        for handler in handlers:
            if handler.can_retry(state=state, request=retry_request, response=response, error=error):
                handler.prepare_for_next_attempt(
                    state=state, request=retry_request, response=response, error=error
                )
                break
        if not state.next_attempt_requested:
            if response is not None:
                snippet = (response.data or b"")[:200].decode("utf-8", "replace").strip()
                raise _UploadFailed(f"HTTP {response.status_code}" + (f" ({snippet})" if snippet else ""))
            raise _UploadFailed(f"{type(error).__name__}: {error}")


class _UploadFailed(Exception):
    pass


def post_report(
    digest: Digest,
    *,
    channel: str,
    pdf_path: Path | None,
    thread_ts: str | None = None,
    token_env: str = "SLACK_BOT_TOKEN",
    api_url: str | None = None,
    max_retries: int = 3,
    max_wait_s: float = 60.0,
    timeout_s: float = 30.0,
) -> PostResult:
    """Post the digest to `channel` (in `thread_ts`'s thread if given), then upload the PDF
    into the digest's thread. Raises NotifyError naming the step that failed for good."""
    token, base_url = check_settings(token_env=token_env, api_url=api_url)
    path = _check_pdf(pdf_path)
    data = path.read_bytes() if path is not None else None

    budget = _Budget(max_wait_s=max_wait_s, timeout_s=timeout_s)
    handlers = _retry_handlers(budget, max_retries)
    scrubber = _ScrubFilter(token)
    _sdk_logger.addFilter(scrubber)
    try:
        client = _DeadlineWebClient(
            token=token,
            base_url=base_url,
            timeout=timeout_s,  # type: ignore[arg-type]
            logger=_sdk_logger,
            retry_handlers=handlers,
        )
        budget.client = client

        posted = _call(
            "chat.postMessage", budget, token, None, client.chat_postMessage,
            **_message_payload(digest, channel, thread_ts),
        )
        ts = str(posted["ts"])
        channel_id = str(posted.get("channel") or channel)
        if path is None or data is None:
            return PostResult(channel=channel_id, ts=ts, file_id=None)

        got = _call(
            "files.getUploadURLExternal", budget, token, ts, client.files_getUploadURLExternal,
            filename=path.name, length=len(data),
        )
        file_id = str(got["file_id"])
        step = "file upload (POST to the upload_url)"
        budget.start_step(step)
        try:
            _upload_bytes(str(got["upload_url"]), data, handlers, budget)
        except _UploadFailed as err:
            raise _failure(step, str(err), budget, token, ts) from None

        _call(
            "files.completeUploadExternal", budget, token, ts, client.files_completeUploadExternal,
            files=[{"id": file_id, "title": path.name}], channel_id=channel_id, thread_ts=thread_ts or ts,
        )
        return PostResult(channel=channel_id, ts=ts, file_id=file_id)
    finally:
        _sdk_logger.removeFilter(scrubber)
