"""The playground's JSON API: OpenAI-shaped completions (whole and streamed, equal to the
sampler's text), stop strings, every refused request answered in OpenAI's error shape, the
concurrency cap, and the inspect endpoints equal to the inspect functions they call."""

import json
import re

import pytest
import torch
from starlette.testclient import TestClient

from glassformer.config import RunConfig, SampleConfig
from glassformer.errors import GlassformerError
from glassformer.generate.sampler import generate
from glassformer.inspect.capture import AttentionCapture
from glassformer.inspect.lens import logit_lens
from glassformer.inspect.next_token import RAW, candidates, kept, label, next_logits
from glassformer.serve.api import create_app
from glassformer.serve.limits import Limits
from glassformer.train.checkpoint import Run
from tests.serve.conftest import LIMITS

PROMPT = "From fairest"


@pytest.fixture
def app(run):
    return create_app(run, LIMITS, name="tiny")


@pytest.fixture
def client(app):
    return TestClient(app)


def complete(client, **fields) -> dict:
    response = client.post("/v1/completions", json={"prompt": PROMPT, **fields})
    assert response.status_code == 200, response.text
    return response.json()


def streamed(client, **fields) -> list:
    """The `data:` payloads of a streamed completion, parsed ("[DONE]" kept as is)."""
    response = client.post("/v1/completions", json={"prompt": PROMPT, "stream": True, **fields})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/event-stream")
    events = [block for block in response.text.split("\n\n") if block]
    assert all(event.startswith("data: ") for event in events), events
    return [e[6:] if e == "data: [DONE]" else json.loads(e[6:]) for e in events]


def test_a_completion_has_openai_shape_and_the_samplers_text(client, run):
    answer = complete(client, max_tokens=12, temperature=0.9, top_k=5, top_p=0.95, seed=3)
    assert answer["id"].startswith("cmpl-") and answer["object"] == "text_completion"
    assert isinstance(answer["created"], int) and answer["model"] == "tiny"
    [choice] = answer["choices"]
    cfg = SampleConfig(max_new_tokens=12, temperature=0.9, top_k=5, top_p=0.95, seed=3)
    assert choice["text"] == generate(run.model, run.tokenizer, [PROMPT], cfg)[0]
    assert len(choice["text"]) == 12  # one character per token, no stop string
    assert choice["index"] == 0 and choice["finish_reason"] == "length"
    assert answer["usage"] == {"prompt_tokens": len(PROMPT), "completion_tokens": 12,
                               "total_tokens": len(PROMPT) + 12}


def test_greedy_completions_repeat_and_the_seed_repeats_samples(client, run):
    greedy = complete(client, max_tokens=10, temperature=0)["choices"][0]["text"]
    assert greedy == complete(client, max_tokens=10, temperature=0)["choices"][0]["text"]
    cfg = SampleConfig(max_new_tokens=10, temperature=0)
    assert greedy == generate(run.model, run.tokenizer, [PROMPT], cfg)[0]
    first = complete(client, max_tokens=10, seed=5)["choices"][0]["text"]
    assert complete(client, max_tokens=10, seed=5)["choices"][0]["text"] == first


def test_a_stream_is_chunks_then_done_and_joins_to_the_whole_text(client):
    events = streamed(client, max_tokens=15, temperature=0.8, seed=7)
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    assert len({c["id"] for c in chunks}) == 1 and chunks[0]["id"].startswith("cmpl-")
    assert all(c["object"] == "text_completion" and c["model"] == "tiny" for c in chunks)
    assert [c["choices"][0]["finish_reason"] for c in chunks] == [None] * 15 + ["length"]
    text = "".join(c["choices"][0]["text"] for c in chunks)
    assert text == complete(client, max_tokens=15, temperature=0.8, seed=7)["choices"][0]["text"]


@pytest.mark.parametrize("stream", [False, True])
def test_a_stop_string_ends_the_text_before_it(client, stream):
    whole = complete(client, max_tokens=30, seed=11)["choices"][0]["text"]
    stop = whole[20:22]
    end = whole.index(stop)
    fields = {"max_tokens": 30, "seed": 11, "stop": ["zzz", stop] if stream else stop}
    if stream:
        chunks = streamed(client, **fields)[:-1]
        text = "".join(c["choices"][0]["text"] for c in chunks)
        finish = chunks[-1]["choices"][0]["finish_reason"]
    else:
        answer = complete(client, **fields)
        text, finish = answer["choices"][0]["text"], answer["choices"][0]["finish_reason"]
        assert answer["usage"]["completion_tokens"] == end + len(stop)  # tokens made, stop's too
    assert text == whole[:end] and finish == "stop"


def error_of(response, status: int, param: str | None) -> str:
    """The message of an OpenAI-shaped error answer, after checking its status and shape."""
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["param"] == param and error["message"]
    assert "Traceback" not in error["message"]
    return error["message"]


TOO_LONG = "From " * 41  # 205 characters; LIMITS.max_prompt_chars is 200


@pytest.mark.parametrize("body, status, param, says", [
    (b"{", 400, None, "not valid JSON"),
    (b'{"prompt": "From", "temperature": NaN}', 400, None, "NaN"),
    (b"\xff\xfe{", 400, None, "not valid JSON"),
    (b"[1, 2]", 400, None, "JSON object"),
    ({"prompt": "From", "temperatur": 1}, 400, "temperatur", "did you mean 'temperature'"),
    ({"prompt": "From", "max_token": 5}, 400, "max_token", "did you mean 'max_tokens'"),
    ({"prompt": "From", "n": 2}, 400, "n", "one completion per request (n=1), got 2"),
    ({"prompt": "From", "n": 0}, 400, "n", "greater than or equal to 1"),
    ({"prompt": "From", "best_of": 3}, 400, "best_of", "(best_of=1), got 3"),
    ({"prompt": "From", "suffix": " end"}, 400, "suffix", "send suffix null"),
    ({"prompt": "From", "logit_bias": {"5": -100}}, 400, "logit_bias", "null or {} only"),
    ({"prompt": "From", "echo": True, "logprobs": 1}, 400, "echo", "echo false or logprobs null"),
    ({"prompt": "From", "logprobs": 6}, 400, "logprobs", "less than or equal to 5"),
    ({"prompt": "From", "logprobs": -1}, 400, "logprobs", "greater than or equal to 0"),
    ({"prompt": "From", "presence_penalty": 2.5}, 400, "presence_penalty", "less than or equal"),
    ({"prompt": "From", "frequency_penalty": -3}, 400, "frequency_penalty", "greater than or"),
    ({"prompt": "From", "user": 5}, 400, "user", "valid string"),
    ({"prompt": "From", "stream_options": {"usage": True}}, 400, "stream_options",
     "unknown field 'stream_options.usage'"),
    ({}, 400, "prompt", "required"),
    ({"prompt": 5}, 400, "prompt", "valid string"),
    ({"prompt": ["From", "fair"]}, 400, "prompt", "valid string"),
    ({"prompt": ""}, 400, "prompt", "at least 1 character"),
    ({"prompt": "Zebra"}, 400, "prompt", "unknown character"),
    ({"prompt": TOO_LONG}, 413, "prompt", "205 characters"),
    ({"prompt": "From", "max_tokens": "5"}, 400, "max_tokens", "valid integer"),
    ({"prompt": "From", "max_tokens": 5.0}, 400, "max_tokens", "valid integer"),
    ({"prompt": "From", "max_tokens": 0}, 400, "max_tokens", "greater than or equal to 1"),
    ({"prompt": "From", "max_tokens": LIMITS.max_tokens + 1}, 400, "max_tokens", "at most"),
    ({"prompt": "From", "temperature": -0.1}, 400, "temperature", "greater than or equal"),
    ({"prompt": "From", "temperature": 2.5}, 400, "temperature", "less than or equal"),
    ({"prompt": "From", "temperature": True}, 400, "temperature", "valid number"),
    ({"prompt": "From", "top_p": 0}, 400, "top_p", "greater than 0"),
    ({"prompt": "From", "top_p": 1.5}, 400, "top_p", "less than or equal to 1"),
    ({"prompt": "From", "top_k": -1}, 400, "top_k", "greater than or equal to 0"),
    ({"prompt": "From", "seed": -1}, 400, "seed", "greater than or equal to 0"),
    ({"prompt": "From", "stream": "yes"}, 400, "stream", "valid boolean"),
    ({"prompt": "From", "stop": ["a", "b", "c"]}, 400, "stop", "at most 2 stop strings"),
    ({"prompt": "From", "stop": ""}, 400, "stop", "must not be empty"),
    ({"prompt": "From", "stop": [1]}, 400, "stop", "valid string"),
])
def test_every_bad_request_is_a_4xx_in_openai_error_shape(client, body, status, param, says):
    if isinstance(body, bytes):
        response = client.post("/v1/completions", content=body)
    else:
        response = client.post("/v1/completions", json=body)
    assert says in error_of(response, status, param)
    assert response.json()["error"]["type"] == "invalid_request_error"


def test_a_body_larger_than_the_limit_is_refused_unread(client):
    body = b'{"prompt": "' + b"F" * LIMITS.max_body_bytes + b'"}'
    assert "larger than" in error_of(client.post("/v1/completions", content=body), 413, None)


def test_unknown_paths_and_methods_answer_in_the_error_shape(client):
    assert error_of(client.get("/v1/nothing"), 404, None) == "Not Found"
    assert error_of(client.get("/v1/completions"), 405, None) == "Method Not Allowed"


def test_a_failure_inside_the_model_is_a_500_or_a_last_event_without_traceback(run):
    def broken(*args, **kwargs):
        raise RuntimeError("a bug")

    run.model.forward = broken
    client = TestClient(create_app(run, LIMITS), raise_server_exceptions=False)
    response = client.post("/v1/completions", json={"prompt": PROMPT})
    assert error_of(response, 500, None) == "the server failed; see its log"
    events = client.post("/v1/completions", json={"prompt": PROMPT, "stream": True}).text
    last = json.loads(events.strip().split("\n\n")[-1][6:])
    assert last["error"]["type"] == "server_error" and "a bug" not in events
    assert client.app.state.playground.slots.running == 0


def test_beyond_the_concurrency_cap_a_completion_is_refused_with_429(run, app, client):
    refused = TestClient(create_app(run, Limits(max_concurrent=0)))
    response = refused.post("/v1/completions", json={"prompt": PROMPT})
    assert "completions are running" in error_of(response, 429, None)
    assert response.json()["error"]["type"] == "rate_limit_error"
    assert response.headers["retry-after"] == "1"

    slots = app.state.playground.slots
    assert slots.take() and slots.take()  # LIMITS.max_concurrent = 2 completions running
    for stream in (False, True):
        response = client.post("/v1/completions", json={"prompt": PROMPT, "stream": stream})
        error_of(response, 429, None)
    assert client.post("/v1/distribution", json={"text": PROMPT}).status_code == 200
    slots.give_back()
    assert complete(client, max_tokens=3)["choices"][0]["finish_reason"] == "length"
    assert slots.running == 1  # the completion gave its slot back


@pytest.mark.parametrize("setting", [
    SampleConfig(temperature=0.7, top_k=5, top_p=0.9), SampleConfig(temperature=1.3),
    SampleConfig(temperature=1.0, top_p=0.5), SampleConfig(temperature=0.0)])
def test_the_distribution_is_the_inspect_functions_numbers(client, run, setting):
    response = client.post("/v1/distribution", json={
        "text": PROMPT, "temperature": setting.temperature, "top_k": setting.top_k or 0,
        "top_p": setting.top_p, "top": 8})
    assert response.status_code == 200, response.text
    view = response.json()
    ids = run.tokenizer.encode(PROMPT)
    logits = next_logits(run.model, ids)  # (1, V)
    rows = candidates(logits, run.tokenizer.decode, [RAW, setting], 8)
    assert view["candidates"] == [
        {"token": r["token"], "id": r["id"], "probability": r["probs"]["T=1"],
         "filtered": r["probs"][label(setting)]} for r in rows]
    assert view["kept"] == kept(logits, setting)
    assert view["tokens"] == list(PROMPT) and view["vocab_size"] == run.tokenizer.vocab_size
    assert view["setting"] == label(setting)


def test_at_temperature_0_the_distribution_is_all_on_the_top_token(client):
    view = client.post("/v1/distribution", json={"text": PROMPT, "temperature": 0}).json()
    assert view["kept"] == 1
    assert [c["filtered"] for c in view["candidates"]] == [1.0] + [0.0] * 9


def finite_json(text: str):
    """`text` parsed as JSON that has only finite numbers (NaN and Infinity are errors)."""
    def refuse(name):
        raise ValueError(f"{name} in the answer")

    return json.loads(text, parse_constant=refuse)


TINY_TEMPERATURES = [1e-45, 1e-40, 1e-30]  # the first two are float32 subnormals


@pytest.mark.parametrize("t", TINY_TEMPERATURES)
def test_a_tiny_temperature_completes_as_greedy_decoding_does(client, t):
    greedy = complete(client, max_tokens=12, temperature=0)["choices"][0]["text"]
    response = client.post("/v1/completions", json={
        "prompt": PROMPT, "max_tokens": 12, "temperature": t, "seed": 1, "logprobs": 2})
    assert response.status_code == 200, response.text
    [choice] = finite_json(response.text)["choices"]
    assert choice["text"] == greedy and choice["finish_reason"] == "length"
    assert len(choice["logprobs"]["token_logprobs"]) == 12
    events = streamed(client, max_tokens=12, temperature=t, seed=1, logprobs=2)
    assert events[-1] == "[DONE]" and "error" not in events[-2]
    finite_json(json.dumps(events))  # (json.dumps writes NaN and Infinity as such)
    assert "".join(e["choices"][0]["text"] for e in events[:-1]) == greedy


@pytest.mark.parametrize("t", TINY_TEMPERATURES)
def test_at_a_tiny_temperature_the_distribution_is_all_on_the_top_token(client, run, t):
    response = client.post("/v1/distribution", json={"text": PROMPT, "temperature": t})
    assert response.status_code == 200, response.text
    view = finite_json(response.text)
    top = int(next_logits(run.model, run.tokenizer.encode(PROMPT)).argmax())
    assert view["kept"] == 1 and view["candidates"][0]["id"] == top
    assert [c["filtered"] for c in view["candidates"]] == [1.0] + [0.0] * 9


def captured(run, ids: list[int]) -> dict:
    with torch.no_grad(), AttentionCapture(run.model) as capture:
        run.model(torch.tensor([ids]))
    return capture.weights  # name -> (1, H, T, T)


def test_the_attention_is_the_captured_weights(client, run):
    ids = run.tokenizer.encode(PROMPT)
    weights = captured(run, ids)
    whole = client.post("/v1/attention", json={"text": PROMPT}).json()
    assert whole["tokens"] == list(PROMPT) and whole["start"] == 0 and whole["position"] is None
    assert [layer["name"] for layer in whole["layers"]] == ["blocks.0.attn", "blocks.1.attn"]
    for layer in whole["layers"]:
        assert layer["heads"] == weights[layer["name"]][0].tolist()  # (H, T, T)
    one = client.post("/v1/attention", json={"text": PROMPT, "position": 4}).json()
    for layer in one["layers"]:
        assert layer["heads"] == captured(run, ids[:5])[layer["name"]][0, :, -1].tolist()  # (H, 5)


def test_past_the_window_a_query_attends_to_the_last_block_size_tokens(client, run):
    text = (PROMPT + " ") * 4  # 52 tokens; the window is 32
    ids = run.tokenizer.encode(text)
    view = client.post("/v1/attention", json={"text": text, "position": 40}).json()
    assert view["start"] == 40 + 1 - 32 and len(view["tokens"]) == len(ids)
    weights = captured(run, ids[9:41])
    for layer in view["layers"]:
        assert layer["heads"] == weights[layer["name"]][0, :, -1].tolist()  # (H, 32)
    assert "block_size" in error_of(client.post("/v1/attention", json={"text": text}), 413, "text")


def test_the_lens_is_the_logit_lens_at_the_clicked_token(client, run):
    ids = run.tokenizer.encode(PROMPT)
    view = client.post("/v1/lens", json={"text": PROMPT, "position": 4, "top": 3}).json()
    assert view["tokens"] == list(PROMPT) and view["start"] == 0 and view["position"] == 4
    assert view["next"] == {"token": PROMPT[5], "id": ids[5]}
    probs = torch.softmax(logit_lens(run.model, torch.tensor([ids[:5]]))[:, -1], dim=-1)  # (3, V)
    assert [layer["layer"] for layer in view["layers"]] == ["embed", "layer 0", "layer 1"]
    for layer, p in zip(view["layers"], probs):
        best = p.topk(3)
        assert [t["id"] for t in layer["top"]] == best.indices.tolist()
        assert [t["token"] for t in layer["top"]] == [run.tokenizer.decode([i])
                                                      for i in best.indices.tolist()]
        assert [t["probability"] for t in layer["top"]] == pytest.approx(best.values.tolist())
        assert layer["next_probability"] == pytest.approx(p[ids[5]].item())
        assert layer["next_rank"] == int((p > p[ids[5]]).sum())
    # the model's own next-token distribution is the last layer's
    assert probs[-1] == pytest.approx(torch.softmax(next_logits(run.model, ids[:5])[0], dim=-1))


def test_the_lens_at_the_last_token_has_no_next_and_reads_its_window(client, run):
    text = (PROMPT + " ") * 4  # 52 tokens; the window is 32
    ids = run.tokenizer.encode(text)
    view = client.post("/v1/lens", json={"text": text, "position": len(ids) - 1}).json()
    assert view["next"] is None and view["start"] == len(ids) - 32
    probs = torch.softmax(logit_lens(run.model, torch.tensor([ids[-32:]]))[:, -1], dim=-1)
    for layer, p in zip(view["layers"], probs):
        assert layer["next_rank"] is None and layer["next_probability"] is None
        assert [t["probability"] for t in layer["top"]] == pytest.approx(p.topk(5).values.tolist())


@pytest.mark.parametrize("path, body, status, param, says", [
    ("/v1/lens", {"text": PROMPT, "position": len(PROMPT)}, 400, "position", "positions 0 to"),
    ("/v1/lens", {"text": PROMPT}, 400, "position", "'position' is required"),
    ("/v1/lens", {"text": PROMPT, "position": 0, "top": 51}, 400, "top", "less than or equal"),
    ("/v1/attention", {"text": PROMPT, "position": len(PROMPT)}, 400, "position", "positions 0 to"),
    ("/v1/attention", {"text": PROMPT, "position": -1}, 400, "position", "greater than or equal"),
    ("/v1/attention", {"text": PROMPT, "query": 1}, 400, "query", "unknown field 'query'"),
    ("/v1/attention", {"text": ""}, 400, "text", "at least 1 character"),
    ("/v1/attention", {"text": "Zebra"}, 400, "text", "unknown character"),
    ("/v1/distribution", {"text": PROMPT, "top": 0}, 400, "top", "greater than or equal to 1"),
    ("/v1/distribution", {"text": PROMPT, "top": 101}, 400, "top", "less than or equal to 100"),
    ("/v1/distribution", {"text": PROMPT, "top_p": 2}, 400, "top_p", "less than or equal to 1"),
    ("/v1/distribution", {"text": TOO_LONG}, 413, "text", "205 characters"),
    ("/v1/distribution", {"prompt": PROMPT}, 400, "prompt", "unknown field 'prompt'"),
])
def test_bad_inspect_requests_are_4xx_naming_the_field(client, path, body, status, param, says):
    assert says in error_of(client.post(path, json=body), status, param)


def test_models_and_status_name_the_run_and_its_limits(client):
    models = client.get("/v1/models").json()
    assert models["object"] == "list" and [m["id"] for m in models["data"]] == ["tiny"]
    status = client.get("/v1/status").json()
    assert status["running"] == 0 and status["limits"]["max_tokens"] == LIMITS.max_tokens
    assert (status["n_layer"], status["n_head"], status["block_size"]) == (2, 2, 32)


def test_the_page_and_its_files_are_served(client):
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    links = re.findall(r'(?:src|href)="(/[^"]*)"', page.text)
    assert sorted(links) == ["/static/app.js", "/static/style.css"]
    assert re.findall(r'(?:src|href)="([^/][^"]*)"', page.text) == ["data:,"]  # no icon to load
    for link in links:
        assert client.get(link).status_code == 200
    assert set(re.findall(r'"(/[^"]*)"', client.get("/static/app.js").text)) == {
        "/v1/completions", "/v1/distribution", "/v1/attention", "/v1/lens", "/v1/status",
        "/v1/chat/completions", "/v1/chat/text"}


def test_a_run_directory_is_served_under_its_name(run_dir):
    client = TestClient(create_app(run_dir))
    assert client.get("/v1/models").json()["data"][0]["id"] == run_dir.name


def test_only_gpt_runs_are_served(run):
    cfg = RunConfig.from_dict({"model": {"family": "bert"}, "train": {"task": "mlm"}})
    bert = Run(cfg=cfg, tokenizer=run.tokenizer, model=None, step=0)
    with pytest.raises(GlassformerError, match="needs a gpt run"):
        create_app(bert)


def test_limits_name_a_bad_field():
    with pytest.raises(GlassformerError, match="max_concurrent"):
        Limits(max_concurrent=-1)
    with pytest.raises(GlassformerError, match="max_tokens"):
        Limits(max_tokens=0)
