"""llmi.http against a real server on loopback: every failure maps to llmi.errors, once."""

from __future__ import annotations

import asyncio
import gzip

import pytest

from backend_fixtures import port_fixture  # noqa: F401 - fixture
from http_fixtures import ScriptedServer, Step, scripted_fixture  # noqa: F401 - fixture
from llmi.errors import BackendError, ContentRefused, LlmiError, ToolTimeout, WriterError
from llmi.http import MAX_RESPONSE_BYTES, Retry, Service, parse_retry_after, request, stream

SERVICE = Service("the test API", key_hint="TEST_API_KEY")


def call(url: str, service: Service = SERVICE, **kwargs):
    kwargs.setdefault("timeout", 5.0)
    return asyncio.run(request(service, kwargs.pop("method", "GET"), url, **kwargs))


def failure(url: str, **kwargs) -> LlmiError:
    with pytest.raises(LlmiError) as info:
        call(url, **kwargs)
    return info.value


# -- success and bodies --------------------------------------------------------------------------


def test_json_answer_and_what_was_sent(scripted: ScriptedServer) -> None:
    scripted.script(Step(body={"data": [1, 2]}))
    answer = call(scripted.url + "/v1/x", method="POST", json={"a": 1}, api_key="sk-1", params={"q": "owl"})
    assert answer.status == 200 and answer.json() == {"data": [1, 2]}
    seen = scripted.seen[0]
    assert (seen.method, seen.path) == ("POST", "/v1/x?q=owl")
    assert seen.headers["authorization"] == "Bearer sk-1"
    assert seen.body == b'{"a":1}' or seen.body == b'{"a": 1}'


def test_body_that_is_not_json_is_malformed_not_transient(scripted: ScriptedServer) -> None:
    scripted.script(Step(body="<html>gateway</html>"))
    answer = call(scripted.url)
    with pytest.raises(BackendError, match="malformed response from the test API: not JSON") as info:
        answer.json()
    assert info.value.transient is False and info.value.status == 200


def test_body_of_the_wrong_shape_is_malformed(scripted: ScriptedServer) -> None:
    scripted.script(Step(body=[1, 2, 3]))
    with pytest.raises(BackendError, match="expected a JSON object, got list"):
        call(scripted.url).json()
    scripted.script(Step(body={"a": 1}))
    with pytest.raises(BackendError, match="expected a JSON array"):
        call(scripted.url).json(list)


def test_an_error_object_in_a_200_is_classified_unless_asked_not_to(scripted: ScriptedServer) -> None:
    scripted.script(Step(body={"error": {"code": "server_busy", "message": "try later"}}))
    answer = call(scripted.url)
    with pytest.raises(BackendError, match="try later"):
        answer.json()
    assert answer.json(error_in_body=False)["error"]["code"] == "server_busy"


def test_gzip_bodies_are_decoded(scripted: ScriptedServer) -> None:
    scripted.script(Step(body=gzip.compress(b'{"ok": 1}'), headers={"Content-Encoding": "gzip", "Content-Type": "application/json"}))
    assert call(scripted.url).json() == {"ok": 1}


# -- status codes --------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [401, 403])
def test_refused_key_says_which_variable(scripted: ScriptedServer, status: int) -> None:
    scripted.script(Step(status, {"error": {"message": "Incorrect API key provided"}}))
    err = failure(scripted.url)
    assert type(err) is BackendError and not err.transient and err.status == status
    assert "rejected the API key" in str(err) and "check TEST_API_KEY" in str(err) and "Incorrect API key" in str(err)


def test_not_found_says_check_the_url_and_hides_the_query(scripted: ScriptedServer) -> None:
    scripted.script(Step(404, "no such route"))
    err = failure(scripted.url + "/v2/search?api_key=secret-key", params={"api_key": "secret-key"})
    assert not err.transient and err.status == 404 and "check the URL" in str(err)
    assert "secret-key" not in str(err)


@pytest.mark.parametrize("status", [408, 425, 429, 500, 502, 503, 504, 599])
def test_transient_statuses(scripted: ScriptedServer, status: int) -> None:
    scripted.script(Step(status, {"detail": "busy"}))
    err = failure(scripted.url)
    assert type(err) is BackendError and err.transient and err.status == status and "busy" in str(err)


@pytest.mark.parametrize("status", [400, 405, 409, 413, 422, 501, 505])
def test_permanent_statuses_carry_the_api_message(scripted: ScriptedServer, status: int) -> None:
    scripted.script(Step(status, {"error": {"code": "invalid_size", "message": "size must be 1024x1024"}}))
    err = failure(scripted.url)
    assert not err.transient and err.status == status
    assert "invalid_size" in str(err) and "size must be 1024x1024" in str(err)


def test_fastapi_validation_details_are_readable(scripted: ScriptedServer) -> None:
    scripted.script(Step(422, {"detail": [{"loc": ["body", "height"], "msg": "must be positive"}]}))
    assert "must be positive" in str(failure(scripted.url))


def test_retry_after_is_kept_in_seconds_or_as_a_date(scripted: ScriptedServer) -> None:
    scripted.script(Step(429, {"error": "slow down"}, headers={"Retry-After": "7"}))
    err = failure(scripted.url)
    assert err.transient and err.retry_after == 7.0 and "retry after 7 s" in str(err)
    scripted.script(Step(503, "", headers={"Retry-After": "Wed, 21 Oct 2099 07:28:00 GMT"}))
    assert failure(scripted.url).retry_after > 1e6


@pytest.mark.parametrize(
    "body",
    [
        {"error": {"code": "insufficient_quota", "message": "You exceeded your current quota"}},
        {"error": "Your account has run out of searches."},
        {"error": {"code": "AccountOverdueError", "message": "overdue"}},
    ],
)
def test_an_exhausted_plan_is_not_transient_even_on_429(scripted: ScriptedServer, body: dict) -> None:
    scripted.script(Step(429, body))
    err = failure(scripted.url)
    assert not err.transient and "quota exhausted" in str(err) and "TEST_API_KEY" in str(err)


@pytest.mark.parametrize(
    "body",
    [
        {"error": {"code": "OutputImageSensitiveContentDetected", "message": "risky"}},
        {"error": {"code": "content_policy_violation", "message": "refused"}},
        {"error": {"type": "image_generation_user_error", "code": "moderation_blocked", "message": "x"}},
    ],
)
def test_content_refusals_have_their_own_class(scripted: ScriptedServer, body: dict) -> None:
    scripted.script(Step(400, body))
    err = failure(scripted.url)
    assert isinstance(err, ContentRefused) and not err.transient


def test_a_redirect_is_not_followed(scripted: ScriptedServer) -> None:
    scripted.script(Step(302, "", headers={"Location": "https://elsewhere.example/v1"}))
    err = failure(scripted.url)
    assert not err.transient and "https://elsewhere.example/v1" in str(err)
    assert len(scripted.seen) == 1


# -- transport -----------------------------------------------------------------------------------


def test_connection_refused_is_transient(closed_port: int) -> None:
    err = failure(f"http://127.0.0.1:{closed_port}/v1")
    assert type(err) is BackendError and err.transient and err.status is None
    assert "cannot reach the test API" in str(err)


def test_a_reset_connection_is_transient(scripted: ScriptedServer) -> None:
    scripted.script(Step(action="reset"))
    err = failure(scripted.url)
    assert type(err) is BackendError and err.transient


def test_a_body_cut_short_is_transient(scripted: ScriptedServer) -> None:
    scripted.script(Step(body={"data": "x" * 1000}, action="cut"))
    err = failure(scripted.url)
    assert type(err) is BackendError and err.transient


def test_a_slow_answer_is_a_timeout(scripted: ScriptedServer) -> None:
    scripted.script(Step(delay=2.0))
    err = failure(scripted.url, timeout=0.3)
    assert type(err) is ToolTimeout and err.transient and "within 0.3 s" in str(err)


def test_a_trickling_answer_cannot_outlast_the_whole_timeout(scripted: ScriptedServer) -> None:
    # each piece comes well within a read timeout; the whole answer does not
    scripted.script(Step(body=[b"x"] * 20, delay=0.1, action="stream"))
    assert type(failure(scripted.url, timeout=0.5)) is ToolTimeout


def test_a_body_over_the_bound_is_refused_whether_declared_or_not(scripted: ScriptedServer) -> None:
    scripted.script(Step(body=b"x" * 5000))
    err = failure(scripted.url, max_bytes=1000)
    assert not err.transient and "over the limit" in str(err)
    scripted.script(Step(body=[b"y" * 600] * 5, action="stream"))  # chunked: no Content-Length
    assert "over the limit" in str(failure(scripted.url, max_bytes=1000))
    assert MAX_RESPONSE_BYTES >= 50 * 1024 * 1024


def test_a_gzip_bomb_is_bounded_by_its_decoded_size(scripted: ScriptedServer) -> None:
    bomb = gzip.compress(b"\0" * 5_000_000)
    scripted.script(Step(body=bomb, headers={"Content-Encoding": "gzip"}))
    assert len(bomb) < 100_000
    assert "over the limit" in str(failure(scripted.url, max_bytes=1_000_000))


def test_a_url_that_is_no_url_is_a_clear_permanent_error() -> None:
    err = failure("ftp://example.org/file")
    assert not err.transient and "not a URL llmi can call" in str(err)


def test_callers_name_their_own_classes(scripted: ScriptedServer, closed_port: int) -> None:
    writer = Service("the writer endpoint", error_class=WriterError, timeout_class=WriterError, refused_class=WriterError)
    scripted.script(Step(503), Step(delay=2.0), Step(400, {"error": {"code": "content_policy_violation"}}))
    for timeout in (5.0, 0.3, 5.0):
        with pytest.raises(WriterError):
            call(scripted.url, writer, timeout=timeout)
    with pytest.raises(WriterError) as info:
        call(f"http://127.0.0.1:{closed_port}", writer)
    assert info.value.transient


# -- streaming -----------------------------------------------------------------------------------


def test_stream_yields_pieces_as_they_come(scripted: ScriptedServer) -> None:
    scripted.script(Step(body=[b"data: 1\n\n", b"data: 2\n\n"], action="stream"))

    async def lines() -> list[str]:
        async with stream(SERVICE, "POST", scripted.url, json={}, timeout=5) as response:
            return [line async for line in response.aiter_lines() if line]

    assert asyncio.run(lines()) == ["data: 1", "data: 2"]


def test_stream_raises_error_statuses_before_yielding(scripted: ScriptedServer) -> None:
    scripted.script(Step(429, {"error": {"message": "rate limited"}}, headers={"Retry-After": "2"}))

    async def go() -> None:
        async with stream(SERVICE, "POST", scripted.url, timeout=5):
            raise AssertionError("an error status must not be yielded")

    with pytest.raises(BackendError, match="rate limited") as info:
        asyncio.run(go())
    assert info.value.transient and info.value.retry_after == 2.0


def test_stream_stalling_mid_body_is_a_timeout(scripted: ScriptedServer) -> None:
    scripted.script(Step(body=[b"data: 1\n\n", b"data: 2\n\n"], delay=1.5, action="stream"))

    async def go() -> None:
        async with stream(SERVICE, "GET", scripted.url, timeout=0.4) as response:
            async for _ in response.aiter_lines():
                pass

    with pytest.raises(ToolTimeout):
        asyncio.run(go())


# -- retries -------------------------------------------------------------------------------------


def test_retry_retries_transient_errors_until_one_succeeds(scripted: ScriptedServer) -> None:
    scripted.script(Step(503), Step(action="reset"), Step(body={"n": 3}))
    waits: list[float] = []
    body = asyncio.run(
        Retry(attempts=3, backoff=0.01).run(call_json, scripted.url, on_retry=lambda a, e, d: waits.append(d))
    )
    assert body == {"n": 3} and len(scripted.seen) == 3 and len(waits) == 2


def test_retry_gives_up_after_its_attempts_with_the_last_error(scripted: ScriptedServer) -> None:
    scripted.script(*[Step(502, {"detail": f"try {i}"}) for i in range(5)])
    with pytest.raises(BackendError, match="try 2"):
        asyncio.run(Retry(attempts=3, backoff=0.01).run(call_json, scripted.url))
    assert len(scripted.seen) == 3


def test_retry_never_repeats_a_permanent_error(scripted: ScriptedServer) -> None:
    scripted.script(Step(400, {"error": "bad"}), Step())
    with pytest.raises(BackendError):
        asyncio.run(Retry(attempts=5, backoff=0.01).run(call_json, scripted.url))
    assert len(scripted.seen) == 1


def test_retry_honours_retry_after_within_its_cap(scripted: ScriptedServer) -> None:
    scripted.script(Step(429, headers={"Retry-After": "0.05"}), Step(503, headers={"Retry-After": "3600"}), Step())
    waits: list[float] = []
    asyncio.run(Retry(attempts=3, max_wait=0.1).run(call_json, scripted.url, on_retry=lambda a, e, d: waits.append(d)))
    assert waits == [0.05, 0.1]


def test_retry_stops_before_a_wait_would_pass_the_deadline(scripted: ScriptedServer) -> None:
    import time

    scripted.script(Step(503, headers={"Retry-After": "20"}), Step())
    with pytest.raises(BackendError):
        asyncio.run(Retry(attempts=3, max_wait=30).run(call_json, scripted.url, deadline=time.monotonic() + 5))
    assert len(scripted.seen) == 1


def test_backoff_is_jittered_and_capped() -> None:
    err = BackendError("x", transient=True)
    delays = {Retry(backoff=1.0).delay(2, err) for _ in range(20)}
    assert len(delays) > 1 and all(2.0 <= d < 6.0 for d in delays)
    assert Retry(backoff=1.0, max_wait=3.0).delay(10, err) == 3.0


def test_parse_retry_after_edge_cases() -> None:
    assert parse_retry_after("-5") == 0.0
    assert parse_retry_after("nan") is None
    assert parse_retry_after("  ") is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412490.0) == 0.0


async def call_json(url: str):
    return (await request(SERVICE, "GET", url, timeout=5)).json()


def test_a_5xx_mentioning_quota_or_safety_stays_transient(scripted: ScriptedServer) -> None:
    scripted.script(Step(503, {"error": {"message": "quota service unavailable"}}),
                    Step(500, {"error": {"message": "thread safety violation"}}))
    for _ in range(2):
        err = failure(scripted.url)
        assert type(err) is BackendError and err.transient
