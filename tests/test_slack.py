"""Slack digest: the message built from figures, and posting it (with the PDF) to a fake
Slack Web API served over real HTTP on 127.0.0.1 (tests/fake_slack.py)."""

from __future__ import annotations

import json
import logging
import os
import time
import urllib.request
import uuid

import pytest

from benchrunner.errors import NotifyError, UserError
from benchrunner.notify.digest import (
    MAX_BLOCKS,
    MAX_FIELD_CHARS,
    MAX_FIELDS,
    MAX_HEADER_CHARS,
    MAX_SECTION_CHARS,
    NO_ALERTS,
    DigestInput,
    ModeFigures,
    build_digest,
)
from benchrunner.notify.slack import PostResult, _scrub, dry_run_payload, post_report
from fake_slack import FakeSlack, forever

TOKEN = "xoxb-TEST-SECRET-123"
ENV = "SLACK_BOT_TOKEN"


# --------------------------------------------------------------------------- helpers


def mode(name: str = "single", **kw) -> ModeFigures:
    base = dict(
        mode=name, p50_ms=12.34, p99_ms=45.6, peak_mem_bytes=3.2 * 2**30, util_pct=87.5,
        util_source="gpm_sm", failures=0, runs=20,
    )
    base.update(kw)
    return ModeFigures(**base)


def digest_input(**kw) -> DigestInput:
    base = dict(
        suite="asr-tts", run_id="2024-05-01T02:00Z", commit="0123456789abcdef0123",
        gpu="NVIDIA H100 80GB HBM3", modes=[mode("single"), mode("chunked"), mode("hybrid@32")],
        alerts=[], report_name="nightly.pdf",
    )
    base.update(kw)
    return DigestInput(**base)


def mrkdwn_texts(blocks: list[dict]) -> list[str]:
    """Every mrkdwn string in the blocks."""
    out = []
    for b in blocks:
        objs = [b.get("text")] + b.get("fields", []) + b.get("elements", [])
        out += [o["text"] for o in objs if o and o.get("type") == "mrkdwn"]
    return out


@pytest.fixture
def pdf(tmp_path):
    path = tmp_path / "nightly-report.pdf"
    path.write_bytes(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n" + os.urandom(4096) + b"\r\n--x\r\n\n%%EOF\n")
    return path


@pytest.fixture
def token(monkeypatch):
    monkeypatch.setenv(ENV, TOKEN)
    monkeypatch.delenv("BENCH_SLACK_API_URL", raising=False)
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.delenv(var, raising=False)  # the fake is on loopback
    return TOKEN


# --------------------------------------------------------------------------- digest


def test_digest_alerts_come_first():
    d = build_digest(digest_input(alerts=["p99 of chunked regressed 18% (40.1 -> 47.3 ms)", "peak memory over budget"]))
    assert d.blocks[0]["type"] == "header"
    assert "asr-tts" in d.blocks[0]["text"]["text"] and "2024-05-01T02:00Z" in d.blocks[0]["text"]["text"]
    alerts = d.blocks[1]["text"]["text"]
    assert "regressed 18%" in alerts and "peak memory over budget" in alerts
    assert NO_ALERTS not in json.dumps(d.blocks)
    assert d.text.index("regressed 18%") < d.text.index("single:")
    assert d.blocks[-1]["type"] == "context"


def test_digest_without_alerts_says_so():
    d = build_digest(digest_input(alerts=[]))
    assert NO_ALERTS in d.blocks[1]["text"]["text"]
    assert NO_ALERTS in d.text


def test_digest_mode_fields():
    d = build_digest(digest_input(modes=[
        mode("single", p99_ms=None, util_source="nvml_gpu", failures=2, runs=20),
        mode("cpu-run", p50_ms=1234.5, peak_mem_bytes=None, util_pct=None, util_source="cpu"),
    ], gpu=None, commit=None))
    single, cpu = d.blocks[2], d.blocks[3]
    fields = [f["text"] for f in single["fields"]]
    assert "*p50*\n12.3 ms" in fields
    assert "*p99*\nn/a (n&lt;100)" in fields  # mrkdwn-escaped "n/a (n<100)"
    assert "*peak memory*\n3.20 GiB" in fields
    assert "*GPU busy (kernel running)*\n87.5 %" in fields
    assert "*failures*\n2/20" in fields
    cpu_fields = [f["text"] for f in cpu["fields"]]
    assert "*p50*\n1234 ms" in cpu_fields and "*CPU*\nn/a" in cpu_fields and "*peak memory*\nn/a" in cpu_fields
    assert "n/a (n&lt;100)" in d.text
    context = " ".join(e["text"] for e in d.blocks[-1]["elements"])
    assert "CPU only" in context and "commit unknown" in context
    assert "SM util" in [f["text"] for f in build_digest(digest_input()).blocks[2]["fields"]][3]


def test_digest_limits_with_60_modes():
    modes = [mode(f"hybrid@{i}", failures=i % 7 == 0) for i in range(60)]
    d = build_digest(digest_input(modes=modes, alerts=["a regression"]))
    assert len(d.blocks) <= MAX_BLOCKS
    assert d.blocks[1]["text"]["text"].count("a regression") == 1  # alerts still first
    fold = d.blocks[-2]["text"]["text"]
    shown = sum(1 for b in d.blocks if b.get("fields"))
    assert f"and {60 - shown} more modes" in fold and "hybrid@59" in fold
    assert d.blocks[-1]["type"] == "context"
    assert len(d.blocks[0]["text"]["text"]) <= MAX_HEADER_CHARS
    for b in d.blocks:
        if b["type"] == "section":
            assert len(b["text"]["text"]) <= MAX_SECTION_CHARS
            assert len(b.get("fields", [])) <= MAX_FIELDS
            assert all(len(f["text"]) <= MAX_FIELD_CHARS for f in b.get("fields", []))


def test_digest_long_texts_are_truncated():
    d = build_digest(digest_input(alerts=["x" * 5000], suite="s" * 400))
    alerts = d.blocks[1]["text"]["text"]
    assert len(alerts) <= MAX_SECTION_CHARS and alerts.endswith("\u2026")
    assert len(d.blocks[0]["text"]["text"]) <= MAX_HEADER_CHARS
    # an escape sequence at the cut is dropped whole, never split
    amp = build_digest(digest_input(alerts=["&" * 5000])).blocks[1]["text"]["text"]
    assert len(amp) <= MAX_SECTION_CHARS and amp.endswith("&amp;\u2026")


def test_digest_escapes_mrkdwn():
    d = build_digest(digest_input(
        suite="<script>alert(1)</script>", alerts=["<!channel> p99 > budget & more"],
        modes=[mode("<b>")], gpu="A&B <gpu>",
    ))
    texts = mrkdwn_texts(d.blocks) + [d.text]
    assert not any("<script>" in t or "<!channel>" in t or "<b>" in t for t in texts)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in d.text
    assert "&lt;!channel&gt; p99 &gt; budget &amp; more" in d.blocks[1]["text"]["text"]
    assert "*&lt;b&gt;*" in d.blocks[2]["text"]["text"]
    assert "A&amp;B &lt;gpu&gt;" in json.dumps(d.blocks[-1])


# --------------------------------------------------------------------------- posting


def test_post_uploads_pdf_bytes_into_digest_thread(token, pdf):
    digest = build_digest(digest_input())
    with FakeSlack(token=TOKEN) as slack:
        result = post_report(digest, channel="#bench-nightly", pdf_path=pdf, api_url=slack.api_url)

    assert isinstance(result, PostResult)
    (msg,) = slack.calls("chat.postMessage")
    assert msg.headers["Authorization"] == f"Bearer {TOKEN}"
    assert msg.json["channel"] == "#bench-nightly"
    assert msg.json["blocks"] == digest.blocks and msg.json["text"] == digest.text
    assert "thread_ts" not in msg.json
    (upload,) = slack.calls("upload")
    assert upload.file_bytes == pdf.read_bytes()
    assert slack.uploads[result.file_id] == pdf.read_bytes()
    assert "Authorization" not in upload.headers  # the token goes to the API only
    (got,) = slack.calls("files.getUploadURLExternal")
    assert got.form["filename"] == pdf.name and got.form["length"] == str(pdf.stat().st_size)
    (done,) = slack.calls("files.completeUploadExternal")
    assert done.form["thread_ts"] == result.ts
    assert done.form["channel_id"] == result.channel  # the ID Slack answered, not "#bench-nightly"
    assert json.loads(done.form["files"])[0]["id"] == result.file_id
    assert all(r.headers.get("Authorization") == f"Bearer {TOKEN}" for r in slack.requests if r.method != "upload")


def test_post_into_given_thread_and_without_pdf(token, pdf):
    with FakeSlack(token=TOKEN) as slack:
        result = post_report(build_digest(digest_input()), channel="C0123", pdf_path=pdf,
                             thread_ts="1699999999.000001", api_url=slack.api_url)
        bare = post_report(build_digest(digest_input()), channel="C0123", pdf_path=None, api_url=slack.api_url)
    assert slack.calls("chat.postMessage")[0].json["thread_ts"] == "1699999999.000001"
    assert slack.calls("files.completeUploadExternal")[0].form["thread_ts"] == "1699999999.000001"
    assert result.channel == "C0123" and result.file_id is not None
    assert bare.file_id is None and len(slack.calls("upload")) == 1


def test_api_url_from_env_without_trailing_slash(token, monkeypatch):
    with FakeSlack(token=TOKEN) as slack:
        monkeypatch.setenv("BENCH_SLACK_API_URL", slack.api_url.rstrip("/"))
        result = post_report(build_digest(digest_input()), channel="C1", pdf_path=None)
    assert result.ts and len(slack.calls("chat.postMessage")) == 1


def test_rate_limited_then_ok_waits_retry_after(token, pdf):
    with FakeSlack(token=TOKEN, fail={"chat.postMessage": [(429, {"Retry-After": "1"})]}) as slack:
        t0 = time.monotonic()
        result = post_report(build_digest(digest_input()), channel="C1", pdf_path=pdf, api_url=slack.api_url)
        elapsed = time.monotonic() - t0
    first, second = slack.calls("chat.postMessage")
    assert (first.status, second.status) == (429, 200)
    assert second.at - first.at >= 1.0 and elapsed >= 1.0
    assert result.ts and result.file_id


def test_retry_after_beyond_budget_fails_fast(token):
    with FakeSlack(token=TOKEN, fail={"chat.postMessage": forever(429, {"Retry-After": "30"})}) as slack:
        t0 = time.monotonic()
        with pytest.raises(NotifyError) as exc:
            post_report(build_digest(digest_input()), channel="C1", pdf_path=None,
                        api_url=slack.api_url, max_wait_s=3)
        elapsed = time.monotonic() - t0
    assert elapsed < 10.0 and len(slack.calls("chat.postMessage")) == 1  # not the 30 s it asked for
    msg = str(exc.value)
    assert "chat.postMessage failed: HTTP 429 (ratelimited)" in msg and "after 1 attempt" in msg
    assert "retry after 30 s" in msg and "max_wait_s=3" in msg


@pytest.mark.alone
def test_server_error_forever_ends_in_notify_error(token):
    with FakeSlack(token=TOKEN, fail={"chat.postMessage": forever(500)}) as slack:
        t0 = time.monotonic()
        with pytest.raises(NotifyError) as exc:
            post_report(build_digest(digest_input()), channel="C1", pdf_path=None,
                        api_url=slack.api_url, max_retries=2, max_wait_s=10)
        elapsed = time.monotonic() - t0
    assert len(slack.calls("chat.postMessage")) == 3
    assert elapsed < 5.0  # backoff 0.5 s and 1 s, each plus up to 1 s of jitter
    assert "chat.postMessage failed: HTTP 500" in str(exc.value) and "after 3 attempts" in str(exc.value)


def test_server_error_stops_at_the_time_budget(token):
    with FakeSlack(token=TOKEN, fail={"chat.postMessage": forever(503)}) as slack:
        t0 = time.monotonic()
        with pytest.raises(NotifyError) as exc:
            post_report(build_digest(digest_input()), channel="C1", pdf_path=None,
                        api_url=slack.api_url, max_retries=50, max_wait_s=2.5)
        elapsed = time.monotonic() - t0
    assert elapsed <= 2.5 + 5  # generous for a loaded machine; 50 unbounded retries would take minutes
    assert "HTTP 503" in str(exc.value) and "max_wait_s=2.5" in str(exc.value)


TRICKLE_S = 0.1  # seconds per byte: every read succeeds within any socket timeout
TRICKLE_PADDING = 400  # the trickled JSON answer then takes over 40 s to arrive in full


def test_trickling_api_answer_is_cut_at_the_request_deadline(token):
    # C18: a socket timeout bounds each read, not the request: a server trickling bytes kept
    # a post busy far past its bound. The whole request must end at its deadline.
    with FakeSlack(token=TOKEN, trickle={"chat.postMessage": TRICKLE_S}, trickle_padding=TRICKLE_PADDING) as slack:
        t0 = time.monotonic()
        with pytest.raises(NotifyError) as exc:
            post_report(build_digest(digest_input()), channel="C1", pdf_path=None,
                        api_url=slack.api_url, timeout_s=2, max_wait_s=30)
        elapsed = time.monotonic() - t0
    assert 1.5 <= elapsed < 12, elapsed  # the 2 s request deadline, not the 40 s trickle
    msg = str(exc.value)
    assert "chat.postMessage failed: TimeoutError" in msg and "deadline of the whole request" in msg


def test_trickling_answers_cannot_stretch_the_whole_post(token, pdf):
    # C18: every step trickles, each answer within timeout_s, but the post must still end
    # within max_wait_s (the per-request deadline is min(timeout_s, time left)).
    methods = ("chat.postMessage", "files.getUploadURLExternal", "upload", "files.completeUploadExternal")
    with FakeSlack(token=TOKEN, trickle={m: 0.05 for m in methods}, trickle_padding=TRICKLE_PADDING) as slack:
        t0 = time.monotonic()
        with pytest.raises(NotifyError) as exc:
            post_report(build_digest(digest_input()), channel="C1", pdf_path=pdf,
                        api_url=slack.api_url, timeout_s=60, max_wait_s=3)
        elapsed = time.monotonic() - t0
    assert elapsed < 12, elapsed  # unbounded, each trickled answer takes several seconds
    assert "deadline of the whole request" in str(exc.value) or "time budget is spent" in str(exc.value)


def test_trickling_upload_answer_is_cut_at_the_request_deadline(token, pdf):
    with FakeSlack(token=TOKEN, trickle={"upload": TRICKLE_S}) as slack:
        t0 = time.monotonic()
        with pytest.raises(NotifyError) as exc:
            post_report(build_digest(digest_input()), channel="C1", pdf_path=pdf,
                        api_url=slack.api_url, timeout_s=2, max_wait_s=30)
        elapsed = time.monotonic() - t0
    assert elapsed < 12, elapsed
    msg = str(exc.value)
    assert "file upload" in msg and "deadline of the whole request" in msg
    assert "the digest itself was posted" in msg


def test_upload_step_is_retried(token, pdf):
    with FakeSlack(token=TOKEN, fail={"upload": [(503, {})]}) as slack:
        result = post_report(build_digest(digest_input()), channel="C1", pdf_path=pdf, api_url=slack.api_url)
    assert [r.status for r in slack.calls("upload")] == [503, 200]
    assert slack.uploads[result.file_id] == pdf.read_bytes()


def test_upload_failure_names_step_and_posted_digest(token, pdf):
    with FakeSlack(token=TOKEN, fail={"upload": forever(500, {}, b"upload backend down")}) as slack:
        with pytest.raises(NotifyError) as exc:
            post_report(build_digest(digest_input()), channel="C1", pdf_path=pdf,
                        api_url=slack.api_url, max_retries=1)
    msg = str(exc.value)
    assert "file upload" in msg and "HTTP 500 (upload backend down)" in msg and "after 2 attempts" in msg
    (posted,) = slack.calls("chat.postMessage")
    assert f"the digest itself was posted (ts {posted.reply['ts']})" in msg
    assert not slack.calls("files.completeUploadExternal")


def test_api_error_is_not_retried_and_has_a_hint(token):
    answer = (200, {}, {"ok": False, "error": "channel_not_found"})
    with FakeSlack(token=TOKEN, fail={"chat.postMessage": forever(*answer)}) as slack:
        with pytest.raises(NotifyError) as exc:
            post_report(build_digest(digest_input()), channel="#nope", pdf_path=None, api_url=slack.api_url)
    assert len(slack.calls("chat.postMessage")) == 1
    assert "chat.postMessage failed: HTTP 200 (channel_not_found)" in str(exc.value)
    assert "check the channel" in str(exc.value)


def test_connection_refused_is_a_notify_error(token):
    with FakeSlack() as slack:
        dead = slack.api_url  # the port closes when the server stops
    with pytest.raises(NotifyError) as exc:
        post_report(build_digest(digest_input()), channel="C1", pdf_path=None, api_url=dead,
                    max_retries=1, max_wait_s=5)
    assert "chat.postMessage failed: URLError" in str(exc.value) and "after 2 attempts" in str(exc.value)


def test_token_never_leaks(token, pdf, caplog, capsys):
    caplog.set_level(logging.DEBUG)
    # Slack echoing the token back in a 200 error body: slack_sdk logs that body verbatim at
    # DEBUG, and its `error` field goes into our message
    echo = {"ok": False, "error": f"invalid_auth for {TOKEN}", "headers": {"Authorization": f"Bearer {TOKEN}"}}
    messages = []
    with FakeSlack(token=TOKEN, fail={
        "chat.postMessage": [(429, {"Retry-After": "0"})],
        "files.getUploadURLExternal": [(503, {}, echo)],
        "files.completeUploadExternal": forever(200, {}, echo),
    }) as slack:
        with pytest.raises(NotifyError) as exc:
            post_report(build_digest(digest_input()), channel="C1", pdf_path=pdf,
                        api_url=slack.api_url, max_retries=1)
        messages.append(str(exc.value))
        with pytest.raises(NotifyError) as exc2:
            post_report(build_digest(digest_input()), channel="C1", pdf_path=None,
                        api_url=slack.api_url, token_env="NO_SUCH_TOKEN_VAR")
        messages.append(str(exc2.value))
    assert "files.completeUploadExternal failed: HTTP 200 (invalid_auth for [REDACTED])" in messages[0]
    assert "NO_SUCH_TOKEN_VAR is not set" in messages[1]
    assert any(r.name.startswith("benchrunner.notify.slack") for r in caplog.records)  # debug logs were on
    captured = capsys.readouterr()
    logs = caplog.text + "".join(r.getMessage() for r in caplog.records)
    assert "[REDACTED]" in logs  # the echoed body was logged, scrubbed
    for where in messages + [logs, captured.out, captured.err]:
        assert TOKEN not in where


def test_missing_token_names_the_variable(monkeypatch):
    monkeypatch.delenv(ENV, raising=False)
    with pytest.raises(NotifyError, match="SLACK_BOT_TOKEN is not set"):
        post_report(build_digest(digest_input()), channel="C1", pdf_path=None, api_url="http://127.0.0.1:9/api/")
    monkeypatch.setenv("MY_TOKEN", "   ")
    with pytest.raises(NotifyError, match="MY_TOKEN is not set"):
        post_report(build_digest(digest_input()), channel="C1", pdf_path=None, token_env="MY_TOKEN")


def test_bad_api_url_is_a_user_error(token):
    with pytest.raises(UserError, match="BENCH_SLACK_API_URL"):
        post_report(build_digest(digest_input()), channel="C1", pdf_path=None, api_url="file:///etc/")


def test_missing_pdf_is_refused_before_posting(token, tmp_path):
    with FakeSlack(token=TOKEN) as slack:
        with pytest.raises(UserError, match="not found"):
            post_report(build_digest(digest_input()), channel="C1", pdf_path=tmp_path / "nope.pdf",
                        api_url=slack.api_url)
    assert slack.requests == []


def test_dry_run_payload_needs_no_token(monkeypatch, pdf):
    monkeypatch.delenv(ENV, raising=False)
    digest = build_digest(digest_input())
    payload = dry_run_payload(digest, channel="#bench", pdf_path=pdf, thread_ts="1.2")
    json.dumps(payload)  # serialisable as is
    assert payload["chat.postMessage"] == {
        "channel": "#bench", "text": digest.text, "blocks": digest.blocks, "thread_ts": "1.2",
    }
    assert payload["file"]["path"] == str(pdf) and payload["file"]["size_bytes"] == pdf.stat().st_size
    assert dry_run_payload(digest, channel="#bench", pdf_path=None)["file"] is None


def test_scrub():
    assert _scrub(f"Bearer {TOKEN} and {TOKEN}", TOKEN) == "Bearer [REDACTED] and [REDACTED]"
    assert _scrub("nothing here", TOKEN) == "nothing here"
    assert _scrub("text", "") == "text"


def test_fake_slack_accepts_multipart_upload(token):
    data = b"%PDF-1.4\n" + os.urandom(512) + b"\r\n\r\n--"
    boundary = uuid.uuid4().hex
    with FakeSlack(token=TOKEN) as slack:
        req = urllib.request.Request(
            slack.api_url + "files.getUploadURLExternal", data=f"filename=r.pdf&length={len(data)}".encode(),
            headers={"Authorization": f"Bearer {TOKEN}"},
        )
        got = json.loads(urllib.request.urlopen(req, timeout=5).read())
        body = (
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"r.pdf\"\r\n"
            "Content-Type: application/pdf\r\n\r\n"
        ).encode() + data + f"\r\n--{boundary}--\r\n".encode()
        up = urllib.request.Request(got["upload_url"], data=body,
                                    headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
        assert urllib.request.urlopen(up, timeout=5).status == 200
    assert slack.uploads[got["file_id"]] == data


def test_digest_opens_with_the_reports_answers_then_the_alerts():
    answers = [("Hybrid vs chunked", "hybrid@32 vs chunked: 1.09× faster at 20 s (95% CI 1.02-1.16)"),
               ("Best threshold", "32 s; 30, 35 s cannot be told apart from it <noise>")]
    d = build_digest(digest_input(answers=answers, alerts=["p50 slower at 30 s"]))
    assert d.blocks[0]["type"] == "header"
    first = d.blocks[1]["text"]["text"]
    assert first.startswith("*Hybrid vs chunked*: hybrid@32 vs chunked: 1.09× faster")
    assert "&lt;noise&gt;" in first  # escaped like every other mrkdwn text
    assert d.blocks[2]["text"]["text"].startswith(":rotating_light:")
    assert d.text.splitlines()[1].startswith("Hybrid vs chunked: hybrid@32")
    # answers too long for one section get one section each, each within the limit
    long = [(f"Q{i}", "x" * 1200) for i in range(4)]
    blocks = build_digest(digest_input(answers=long)).blocks
    assert [b["text"]["text"][:4] for b in blocks[1:5]] == ["*Q0*", "*Q1*", "*Q2*", "*Q3*"]
    assert all(len(b["text"]["text"]) <= MAX_SECTION_CHARS for b in blocks if b["type"] == "section")
    assert len(blocks) <= MAX_BLOCKS


def test_digest_header_says_nightly_once():
    for suite, header in (("nightly", "nightly: run R1"), ("asr-nightly", "asr-nightly: run R1"),
                          ("quick", "quick nightly: run R1")):
        d = build_digest(digest_input(suite=suite, run_id="R1"))
        assert d.blocks[0]["text"]["text"] == header
