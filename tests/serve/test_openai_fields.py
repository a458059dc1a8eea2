"""OpenAI's optional completion fields: all of them at their defaults change nothing, the
penalties reach the sampler, logprobs are the model's own log probabilities (whole and
streamed), echo, the usage chunk, and GET /v1/models/{id}. (Values the server cannot honour
are refused by name: tests/serve/test_api.py's bad-request table.)"""

import json

import pytest
import torch
from starlette.testclient import TestClient

from glassformer.config import SampleConfig
from glassformer.generate.sampler import generate
from glassformer.inspect.next_token import next_logits
from glassformer.serve.api import create_app
from tests.serve.conftest import LIMITS
from tests.serve.test_api import PROMPT, complete, error_of, streamed

# Every field of OpenAI's completions request, each at OpenAI's default (user has none).
OPENAI_DEFAULTS = {"model": "tiny", "prompt": PROMPT, "suffix": None, "max_tokens": 16,
                   "temperature": 1, "top_p": 1, "n": 1, "stream": False, "stream_options": None,
                   "logprobs": None, "echo": False, "stop": None, "presence_penalty": 0,
                   "frequency_penalty": 0, "best_of": 1, "logit_bias": None, "user": "someone",
                   "seed": 4}


@pytest.fixture
def client(run):
    return TestClient(create_app(run, LIMITS, name="tiny"))


def text_of(answer: dict) -> str:
    return answer["choices"][0]["text"]


@pytest.mark.parametrize("changed", [{}, {"logit_bias": {}}, {"suffix": ""}, {"user": None}])
def test_every_openai_field_at_its_default_changes_nothing(client, run, changed):
    body = json.dumps(OPENAI_DEFAULTS | changed).encode()  # sent as it is, nulls included
    response = client.post("/v1/completions", content=body,
                           headers={"content-type": "application/json"})
    assert response.status_code == 200, response.text
    answer = response.json()
    assert text_of(answer) == text_of(complete(client, seed=4))
    cfg = SampleConfig(max_new_tokens=16, temperature=1.0, seed=4)
    assert text_of(answer) == generate(run.model, run.tokenizer, [PROMPT], cfg)[0]
    assert answer["choices"][0]["logprobs"] is None and answer["usage"]["completion_tokens"] == 16
    events = streamed(client, **(OPENAI_DEFAULTS | changed | {"stream": True}))
    assert "".join(e["choices"][0]["text"] for e in events[:-1]) == text_of(answer)


def test_the_penalties_reach_the_sampler(client, run):
    penalties = {"presence_penalty": 1.5, "frequency_penalty": -0.7}
    answer = complete(client, max_tokens=30, temperature=0.8, seed=2, **penalties)
    cfg = SampleConfig(max_new_tokens=30, temperature=0.8, seed=2, **penalties)
    assert text_of(answer) == generate(run.model, run.tokenizer, [PROMPT], cfg)[0]
    assert text_of(answer) != text_of(complete(client, max_tokens=30, temperature=0.8, seed=2))


def model_logprobs(run, text: str) -> torch.Tensor:
    """The model's log probabilities (V,) of the token after `text`."""
    return torch.log_softmax(next_logits(run.model, run.tokenizer.encode(text))[0], dim=-1)


def test_logprobs_are_the_models_own_for_each_token(client, run):
    answer = complete(client, max_tokens=10, temperature=0.7, top_k=4, seed=3, logprobs=3)
    text, logprobs = text_of(answer), answer["choices"][0]["logprobs"]
    assert logprobs["tokens"] == list(text)  # one character a token
    assert logprobs["text_offset"] == list(range(len(text)))  # into the choice's text
    for i, token in enumerate(text):
        expected = model_logprobs(run, PROMPT + text[:i])  # (V,) before the filters
        assert logprobs["token_logprobs"][i] == pytest.approx(
            expected[run.tokenizer.encode(token)[0]].item(), abs=1e-5)
        best = expected.topk(3)
        top = {run.tokenizer.decode([j]): p for j, p in zip(best.indices.tolist(),
                                                            best.values.tolist())}
        top[token] = logprobs["token_logprobs"][i]  # the sampled token, if not among them
        assert logprobs["top_logprobs"][i] == pytest.approx(top, abs=1e-5)


def test_logprobs_do_not_depend_on_the_sampling_filters(client):
    greedy = complete(client, max_tokens=8, temperature=0, logprobs=2)["choices"][0]
    top1 = complete(client, max_tokens=8, temperature=1.5, top_k=1, seed=9,
                    logprobs=2)["choices"][0]
    assert top1["text"] == greedy["text"] and top1["logprobs"] == greedy["logprobs"]
    assert all(p < 0 for p in greedy["logprobs"]["token_logprobs"])  # not the filtered 1.0
    zero = complete(client, max_tokens=8, temperature=0, logprobs=0)["choices"][0]["logprobs"]
    assert zero["top_logprobs"] == [{t: p} for t, p in zip(zero["tokens"],
                                                           zero["token_logprobs"])]


def test_streamed_chunks_carry_the_logprobs_of_their_tokens(client):
    fields = {"max_tokens": 40, "temperature": 0.9, "seed": 5, "logprobs": 2}
    whole = text_of(complete(client, **fields))
    stop = whole[25:27]
    fields["stop"] = stop
    answer = complete(client, **fields)["choices"][0]
    assert answer["text"] == whole[:whole.index(stop)] and answer["finish_reason"] == "stop"
    assert "".join(answer["logprobs"]["tokens"]) == answer["text"]  # the stop's tokens: none
    chunks = [e["choices"][0] for e in streamed(client, **fields)[:-1]]
    assert chunks[-1]["logprobs"] is None and chunks[-1]["finish_reason"] == "stop"
    for chunk in chunks[:-1]:
        assert "".join(chunk["logprobs"]["tokens"]) == chunk["text"]
    joined = {key: [v for c in chunks[:-1] for v in c["logprobs"][key]]
              for key in answer["logprobs"]}
    assert joined == answer["logprobs"]


def test_echo_puts_the_prompt_before_the_text(client):
    text = text_of(complete(client, max_tokens=6, seed=1))
    assert text_of(complete(client, max_tokens=6, seed=1, echo=True)) == PROMPT + text
    events = streamed(client, max_tokens=6, seed=1, echo=True)
    assert events[0]["choices"][0]["text"] == PROMPT
    assert "".join(e["choices"][0]["text"] for e in events[:-1]) == PROMPT + text


def test_stream_options_can_ask_for_the_usage(client):
    events = streamed(client, max_tokens=5, stream_options={"include_usage": True})
    assert events[-1] == "[DONE]" and events[-3]["choices"][0]["finish_reason"] == "length"
    assert events[-2]["choices"] == [] and events[-2]["id"] == events[0]["id"]
    assert events[-2]["usage"] == {"prompt_tokens": len(PROMPT), "completion_tokens": 5,
                                   "total_tokens": len(PROMPT) + 5}
    plain = streamed(client, max_tokens=5, stream_options={"include_usage": False})
    assert "usage" not in plain[-2]


def test_a_model_is_retrieved_by_its_id(client):
    assert client.get("/v1/models/tiny").json() == client.get("/v1/models").json()["data"][0]
    response = client.get("/v1/models/gpt-4")
    assert "'gpt-4' does not exist" in error_of(response, 404, None)
    assert response.json()["error"]["code"] == "model_not_found"

