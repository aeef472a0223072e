"""The one HTTP client satori uses to talk to model servers: its own, vLLM, `swift deploy`, a judge.

One policy for every call site (serve client, `predict`, health polls, the eval API model):
- a loopback address never goes through a proxy: with HTTP_PROXY set and no NO_PROXY, a call
  to 127.0.0.1 would reach the proxy, and the error would blame the server; any other address
  follows the environment (HTTP(S)_PROXY, NO_PROXY), as curl does;
- every call has an explicit timeout, and an answer is read up to MAX_BODY_BYTES;
- every failure is one SatoriError line that says what happened: the server cannot be reached,
  did not answer in time, broke off mid-answer, refused the key, answered an error status, or
  sent something that is not the JSON an OpenAI-compatible server sends.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

import httpx

from satori_cli.errors import SatoriError, one_line

MAX_BODY_BYTES = 32 * 1024 * 1024  # far beyond any chat answer; a bigger body is not one
MAX_EVENT_BYTES = 1024 * 1024  # one server-sent event line
HEALTH_TIMEOUT = 2.0
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")  # Unicode category Cc, less \t and \n
SERVE_HINT = "start one with `satori serve`, or check --base-url (it ends in /v1)"


def is_loopback(url: str) -> bool:
    """True for http://127.x.x.x, [::1], 0.0.0.0 and localhost addresses."""
    host = (urlsplit(url).hostname or "").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_loopback or address.is_unspecified  # 0.0.0.0 reaches this machine too


def printable(text: str) -> str:
    """`text` without control characters (ANSI escapes, C1 codes, NUL, CR), newlines and tabs kept.

    A server's answer is printed to a terminal: an escape sequence in it could recolour,
    retitle or rewrite the screen.
    """
    return _CONTROL.sub("", text)


def check_api_key(api_key: str | None) -> None:
    """An API key travels in an HTTP header: printable ASCII, no spaces, or one line saying so."""
    if api_key is not None and not (api_key.isascii() and api_key.isprintable() and " " not in api_key):
        raise SatoriError("the API key must be printable ASCII without spaces (it is sent in an HTTP header)")


def check_base_url(base_url: str) -> None:
    """An http(s) address with a host and a usable port, or one line saying so."""
    try:
        parts = urlsplit(base_url)
        usable = parts.scheme in ("http", "https") and parts.hostname and parts.port != 0
        httpx.URL(base_url)  # what urlsplit lets through and httpx refuses: over 64 KiB
    except (ValueError, httpx.InvalidURL):  # an unclosed IPv6 bracket, a port that is not a number
        usable = False
    if not usable or any(c.isspace() for c in base_url):
        raise SatoriError(
            f"not an http(s) address: {one_line(base_url, 100)}", hint="e.g. http://127.0.0.1:8000/v1"
        )


def client(base_url: str, *, api_key: str | None = None, timeout: float = 30.0) -> httpx.Client:
    """An httpx client for one server: proxy policy, timeouts and the Bearer key set once."""
    check_api_key(api_key)
    check_base_url(base_url)
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    return httpx.Client(
        headers=headers,
        timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
        trust_env=not is_loopback(base_url),  # loopback: no proxy, whatever the environment says
        follow_redirects=False,
    )


def explain(exc: httpx.HTTPError, url: str, timeout: float) -> SatoriError:
    """One line for a transport failure of a request to `url`."""
    if isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout)):
        return SatoriError(f"cannot reach the server at {url}", exit_code=1, hint=SERVE_HINT)
    if isinstance(exc, httpx.TimeoutException):
        return SatoriError(
            f"the server at {url} did not answer within {timeout:g} s", exit_code=1, hint="raise --timeout"
        )
    if isinstance(exc, (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError)):
        return SatoriError(
            f"the connection to {url} broke before the answer was complete ({one_line(exc, 120)})",
            exit_code=1,
        )
    return SatoriError(f"request to {url} failed: {type(exc).__name__}: {one_line(exc, 200)}", exit_code=1)


class HTTPStatusError(SatoriError):
    """The server answered with an error status (`status`): callers decide on the number, never
    on the message, which also holds the URL (a port such as 40191 contains "401")."""

    def __init__(self, message: str, status: int, hint: str | None = None) -> None:
        super().__init__(message, exit_code=1, hint=hint)
        self.status = status


def _status_error(response: httpx.Response, body: bytes, url: str) -> HTTPStatusError:
    status = response.status_code
    if status in (401, 403):
        return HTTPStatusError(
            f"the server at {url} refused the API key (HTTP {status})",
            status,
            hint="pass the server's --api-key",
        )
    return HTTPStatusError(f"the server at {url} answered {status}: {_error_message(body)}", status)


def _error_message(body: bytes) -> str:
    """The message of an OpenAI-style error body (`{"error": {"message": ...}}`, FastAPI's `detail`)."""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        return one_line(body.decode("utf-8", "replace"), 200) or "(no message)"
    for key in ("message", "detail", "error"):
        value = data.get(key) if isinstance(data, dict) else None
        if isinstance(value, dict):
            value = value.get("message")
        if isinstance(value, str) and value.strip():
            return one_line(value, 200)
    return one_line(body.decode("utf-8", "replace"), 200)


def _read(response: httpx.Response, url: str) -> bytes:
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise SatoriError(f"the answer from {url} is larger than {MAX_BODY_BYTES >> 20} MB", exit_code=1)
    chunks, size = [], 0
    for chunk in response.iter_bytes():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise SatoriError(f"the answer from {url} is larger than {MAX_BODY_BYTES >> 20} MB", exit_code=1)
        chunks.append(chunk)
    return b"".join(chunks)


def _json(response: httpx.Response, body: bytes, url: str) -> Any:
    kind = response.headers.get("content-type", "").split(";")[0].strip() or "no content type"
    try:
        return json.loads(body)
    except RecursionError:
        raise SatoriError(f"the answer from {url} is nested too deeply", exit_code=1) from None
    except ValueError:  # UnicodeDecodeError is a ValueError too
        raise SatoriError(
            f"the server at {url} did not answer JSON (it sent {one_line(kind, 60)}, {len(body)} bytes)",
            exit_code=1,
            hint="is --base-url an OpenAI-compatible API? It ends in /v1",
        ) from None


@contextmanager
def _exchange(
    method: str, url: str, payload: Any, api_key: str | None, timeout: float, http: httpx.Client | None
) -> Iterator[httpx.Response]:
    """The streamed response to one request (on `http`, else on a client of its own); a transport
    failure, while it is sent or while the caller reads it, becomes one SatoriError line."""
    own = http is None
    http = http or client(url, api_key=api_key, timeout=timeout)
    try:
        with http.stream(method, url, json=payload) as response:
            yield response
    except httpx.HTTPError as exc:
        raise explain(exc, url, timeout) from None
    finally:
        if own:
            http.close()


def request_json(
    method: str,
    url: str,
    payload: Any = None,
    *,
    api_key: str | None = None,
    timeout: float = 30.0,
    http: httpx.Client | None = None,
) -> Any:
    """Send a request and return the decoded JSON answer, or raise a one-line SatoriError."""
    with _exchange(method, url, payload, api_key, timeout, http) as response:
        body = _read(response, url)
    if response.status_code >= 400:
        raise _status_error(response, body, url)
    if response.status_code >= 300:
        where = response.headers.get("location", "")
        raise SatoriError(f"the server at {url} redirects to {one_line(where, 100)}", exit_code=1)
    return _json(response, body, url)


@contextmanager
def open_events(
    url: str,
    payload: Any,
    *,
    api_key: str | None = None,
    timeout: float = 30.0,
    http: httpx.Client | None = None,
) -> Iterator[Iterator[dict[str, Any]]]:
    """POST `payload` and yield an iterator over the server-sent JSON events (`data: {...}` lines).

    Stops at `data: [DONE]` or the end of the body; a body that is not an event stream (an
    error status, a plain JSON answer, HTML) becomes the same one-line errors as request_json.
    """
    with _exchange("POST", url, payload, api_key, timeout, http) as response:
        if response.status_code >= 400:
            raise _status_error(response, _read(response, url), url)
        if not response.headers.get("content-type", "").startswith("text/event-stream"):
            _json(response, _read(response, url), url)  # raises for non-JSON
            raise SatoriError(
                f"the server at {url} answered a stream request with a single JSON body",
                exit_code=1,
                hint="it does not look like an OpenAI-compatible chat server",
            )
        yield _events(response, url)


def _events(response: httpx.Response, url: str) -> Iterator[dict[str, Any]]:
    for line in response.iter_lines():
        if len(line) > MAX_EVENT_BYTES:
            raise SatoriError(f"an event from {url} is longer than {MAX_EVENT_BYTES >> 10} KB", exit_code=1)
        if not line.startswith("data:"):
            continue  # blank separators, comments (": ping"), `event:` and `id:` fields
        data = line[5:].strip()
        if data == "[DONE]":
            return
        try:
            event = json.loads(data)
        except RecursionError:
            raise SatoriError(f"an event from {url} is nested too deeply", exit_code=1) from None
        except ValueError:
            raise SatoriError(f"the server at {url} sent an event that is not JSON", exit_code=1) from None
        if not isinstance(event, dict):
            raise SatoriError(f"the server at {url} sent an event that is not a JSON object", exit_code=1)
        if "error" in event:
            raise SatoriError(
                f"the server at {url} stopped with an error: {_error_message(data.encode())}", exit_code=1
            )
        yield event


def http_ok(url: str, timeout: float = HEALTH_TIMEOUT) -> bool:
    """GET `url` and say whether it answered 200 (readiness polls; never raises)."""
    try:
        with client(url, timeout=timeout) as http:
            return http.get(url).status_code == 200
    except (httpx.HTTPError, SatoriError, ValueError):
        return False


def served_models(base_url: str, api_key: str | None = None, timeout: float = 10.0) -> list[str]:
    """Model ids an OpenAI-compatible server offers at `base_url` (also proves it is up)."""
    url = base_url.rstrip("/") + "/models"
    try:
        body = request_json("GET", url, api_key=api_key, timeout=timeout)
    except SatoriError as exc:
        raise SatoriError(
            f"no OpenAI-compatible server answers at {base_url} ({exc.message})", hint=SERVE_HINT
        ) from None
    data = body.get("data") if isinstance(body, dict) else None
    if not isinstance(data, list):
        raise SatoriError(f"the server at {base_url} did not list its models (no `data` list in /models)")
    return [str(m["id"]) for m in data if isinstance(m, dict) and isinstance(m.get("id"), (str, int))]


def chat_text(body: Any, url: str) -> str:
    """`choices[0].message.content` of a chat completion, or one line saying what is missing."""
    choices = body.get("choices") if isinstance(body, dict) else None
    if not isinstance(choices, list) or not choices:
        what = "an empty `choices` list" if isinstance(choices, list) else "no `choices`"
        raise SatoriError(f"the server at {url} answered {what}", exit_code=1, hint=_shape_hint(body))
    message = choices[0].get("message") if isinstance(choices[0], dict) else None
    content = message.get("content") if isinstance(message, dict) else None
    if content is None and isinstance(message, dict):
        return ""  # a model may say nothing (content null); that is an answer, not a protocol error
    if not isinstance(content, str):
        raise SatoriError(f"the server at {url} answered without `choices[0].message.content`", exit_code=1)
    return content


def delta_text(event: dict[str, Any]) -> str:
    """The text a streamed chat event adds (`choices[0].delta.content`), "" for role/finish events."""
    choices = event.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        return ""  # e.g. a usage-only event
    delta = choices[0].get("delta")
    content = delta.get("content") if isinstance(delta, dict) else None
    return content if isinstance(content, str) else ""


def _shape_hint(body: Any) -> str | None:
    if isinstance(body, dict) and isinstance(body.get("error"), (dict, str)):
        return "it said: " + _error_message(json.dumps(body).encode())
    return None
