"""``hashhop serve`` as a real subprocess, driven by the official ``openai`` client and by raw HTTP."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import openai
import pytest
from server_helpers import start_server, stop_server

from hashhop.task.generator import plan
from hashhop.task.grammar import native_request
from hashhop.task.spec import HashHopSpec


@pytest.fixture(scope="module")
def server():
    proc, url = start_server("--max-waiting", "2", "--max-request-mb", "8")
    yield url
    stop_server(proc)


def _post(url: str, path: str, body: bytes, content_type: str = "application/json") -> tuple[int, dict, dict]:
    request = urllib.request.Request(url + path, data=body, headers={"Content-Type": content_type}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as r:
            return r.status, json.loads(r.read()), dict(r.headers)
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read()), dict(err.headers)


def _problem(hops: int, cot: bool, context: int = 50_000):
    return plan(
        HashHopSpec(context_tokens=context, tokenizer="chars", hops=hops, chain_of_thought=cot, hash_length=16, num_queries=5, seed=9)
    )


def test_openai_client_completions_and_chat_answer_hashhop(server):
    client = openai.OpenAI(base_url=server + "/v1", api_key="unused", max_retries=0)
    assert [m.id for m in client.models.list().data] == ["builtin:ltm"]
    for hops, cot in ((1, False), (2, True), (2, False)):
        problem = _problem(hops, cot)
        for chain in problem.queries:
            text = native_request(problem.prompt, hops, cot, chain.query)
            out = client.completions.create(model="builtin:ltm", prompt=text, max_tokens=100, stop=["'"])
            assert out.choices[0].text == chain.answer(cot)
            assert out.usage.prompt_tokens == len(text)
        chat = client.chat.completions.create(model="builtin:ltm", messages=[{"role": "user", "content": text}], max_tokens=100)
        assert chat.choices[0].message.content == chain.answer(cot)


def test_max_tokens_cuts_with_finish_reason_length(server):
    problem = _problem(1, False)
    chain = problem.queries[0]
    client = openai.OpenAI(base_url=server + "/v1", api_key="unused", max_retries=0)
    out = client.completions.create(model="builtin:ltm", prompt=native_request(problem.prompt, 1, False, chain.query), max_tokens=3)
    assert out.choices[0].text == chain.answer(False)[:3] and out.choices[0].finish_reason == "length"


@pytest.mark.parametrize(
    "path,body,status",
    [
        ("/v1/completions", b"{not json", 400),
        ("/v1/completions", b"[1, 2]", 400),
        ("/v1/completions", b'{"prompt": 5}', 400),
        ("/v1/completions", b'{"prompt": "x", "max_tokens": -1}', 400),
        ("/v1/completions", b'{"prompt": "x", "stop": 3}', 400),
        ("/v1/completions", b'{"prompt": "x", "stream": true}', 400),
        ("/v1/chat/completions", b'{"messages": []}', 400),
        ("/v1/chat/completions", b'{"messages": [{"role": "user"}]}', 400),
        ("/v1/nothing", b"{}", 404),
    ],
)
def test_malformed_requests_get_http_errors_and_the_server_lives(server, path, body, status):
    code, reply, _ = _post(server, path, body)
    assert code == status and reply["error"]["message"]
    assert reply["error"]["code"] is None or isinstance(reply["error"]["code"], str)  # as OpenAI sends: never an int
    assert set(reply["error"]) == {"message", "type", "param", "code"}
    assert urllib.request.urlopen(server + "/health", timeout=5).status == 200


def test_too_large_and_odd_prompts(server):
    code, reply, _ = _post(server, "/v1/completions", json.dumps({"prompt": "x" * (9 << 20)}).encode())
    assert code == 413 and "limit" in reply["error"]["message"] and reply["error"]["code"] == "request_too_large"
    for prompt in ("", "free text, not HashHop", "\u00e9\u2211\x00 = '"):
        code, reply, _ = _post(server, "/v1/completions", json.dumps({"prompt": prompt}).encode())
        assert code == 200 and isinstance(reply["choices"][0]["text"], str)


def test_concurrency_beyond_capacity_gets_429_then_recovers(server):
    import concurrent.futures

    problem = _problem(2, False, context=2_000_000)  # a fresh 2M context: the first request prefills for a while
    body = json.dumps({"prompt": native_request(problem.prompt, 2, False, problem.queries[0].query)}).encode()
    with concurrent.futures.ThreadPoolExecutor(12) as pool:
        codes = [f.result()[0] for f in [pool.submit(_post, server, "/v1/completions", body) for _ in range(12)]]
    assert codes.count(429) >= 1 and codes.count(200) >= 1 and set(codes) <= {200, 429}
    code, _, _ = _post(server, "/v1/completions", body)
    assert code == 200


def test_a_bad_charset_is_a_400_not_a_500(server):
    code, reply, _ = _post(server, "/v1/completions", b'{"prompt": "x"}', content_type="application/json; charset=bogus")
    assert code == 400 and reply["error"]["message"]


# -- the OpenAI API's shape: models, n, sampling parameters, content parts, error codes ----------------
def _client(server) -> openai.OpenAI:
    return openai.OpenAI(base_url=server + "/v1", api_key="unused", max_retries=0)


def test_an_unknown_model_is_a_404_model_not_found(server):
    client = _client(server)
    with pytest.raises(openai.NotFoundError) as err:
        client.completions.create(model="gpt-4o", prompt="x")
    assert err.value.status_code == 404 and err.value.code == "model_not_found" and "builtin:ltm" in err.value.message
    with pytest.raises(openai.NotFoundError) as err:
        client.chat.completions.create(model="nope", messages=[{"role": "user", "content": "x"}])
    assert err.value.code == "model_not_found"
    code, reply, _ = _post(server, "/v1/completions", b'{"prompt": "x"}')  # no model at all: the served one
    assert code == 200


def test_n_returns_n_identical_greedy_choices(server):
    client = _client(server)
    problem = _problem(1, False)
    chain = problem.queries[0]
    text = native_request(problem.prompt, 1, False, chain.query)
    out = client.completions.create(model="builtin:ltm", prompt=text, n=3, max_tokens=100, stop=["'"])
    assert [c.index for c in out.choices] == [0, 1, 2] and {c.text for c in out.choices} == {chain.answer(False)}
    assert out.usage.completion_tokens == 3 * len(chain.answer(False))
    out = client.completions.create(model="builtin:ltm", prompt=text, best_of=3, max_tokens=100, stop=["'"])
    assert len(out.choices) == 1
    chat = client.chat.completions.create(model="builtin:ltm", messages=[{"role": "user", "content": text}], n=2, max_tokens=100)
    assert [c.message.content for c in chat.choices] == [chain.answer(False)] * 2


@pytest.mark.parametrize(
    "params,name",
    [
        ({"temperature": -5}, "temperature"),
        ({"temperature": "hot"}, "temperature"),
        ({"temperature": 2.5}, "temperature"),
        ({"top_p": 1.5}, "top_p"),
        ({"n": -1}, "n"),
        ({"n": 0}, "n"),
        ({"n": 1000}, "n"),
        ({"n": 3, "best_of": 2}, "best_of"),
    ],
)
def test_out_of_range_sampling_parameters_are_400s_that_name_the_parameter(server, params, name):
    client = _client(server)
    with pytest.raises(openai.BadRequestError) as err:
        client.completions.create(model="builtin:ltm", prompt="x", **params)
    assert err.value.status_code == 400 and err.value.param == name and name in err.value.message
    assert client.completions.create(model="builtin:ltm", prompt="x", temperature=0, top_p=1).choices  # in range: fine


def test_chat_content_as_text_parts_is_concatenated_and_image_parts_are_400(server):
    client = _client(server)
    problem = _problem(2, False)
    chain = problem.queries[1]
    text = native_request(problem.prompt, 2, False, chain.query)
    half = len(text) // 2
    parts = [{"type": "text", "text": text[:half]}, {"type": "text", "text": text[half:]}]
    chat = client.chat.completions.create(model="builtin:ltm", messages=[{"role": "user", "content": parts}], max_tokens=100)
    assert chat.choices[0].message.content == chain.answer(False)
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model="builtin:ltm", messages=[{"role": "user", "content": [parts[0], image]}])
    assert "text" in err.value.message and "image_url" in err.value.message
