"""OpenAI's own Python client against a real server (uvicorn on a loopback port): completions,
whole and streamed, equal the sampler's text; models are listed and retrieved; a refused value
comes back as the client's error."""

import pytest

from glassformer.config import SampleConfig
from glassformer.generate.sampler import generate
from glassformer.serve.api import create_app
from tests.serve.conftest import LIMITS
from tests.serve.test_api import PROMPT

openai = pytest.importorskip(
    "openai", reason="the openai package is not installed (it is in the test extras: "
                     "pip install -e '.[test]')")


@pytest.fixture
def client(run, serve):
    with serve(create_app(run, LIMITS, name="tiny")) as url:
        yield openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0, timeout=60)


def test_the_clients_completions_are_the_samplers_text(client, run):
    cfg = SampleConfig(max_new_tokens=12, temperature=0.9, top_k=5, seed=3,
                       presence_penalty=0.4, frequency_penalty=0.2)
    expected = generate(run.model, run.tokenizer, [PROMPT], cfg)[0]
    fields = dict(model="tiny", prompt=PROMPT, max_tokens=12, temperature=0.9, seed=3,
                  presence_penalty=0.4, frequency_penalty=0.2, extra_body={"top_k": 5})
    completion = client.completions.create(**fields, logprobs=2, n=1, best_of=1, user="me")
    [choice] = completion.choices
    assert choice.text == expected and choice.finish_reason == "length"
    assert choice.logprobs.tokens == list(expected) and len(choice.logprobs.top_logprobs) == 12
    assert completion.usage.completion_tokens == 12 and completion.model == "tiny"
    chunks = list(client.completions.create(**fields, stream=True))
    assert "".join(c.choices[0].text for c in chunks) == expected
    assert chunks[-1].choices[0].finish_reason == "length"


def test_the_client_lists_and_retrieves_the_model(client):
    [listed] = client.models.list().data
    assert listed.id == "tiny" and listed.object == "model"
    assert client.models.retrieve("tiny") == listed
    with pytest.raises(openai.NotFoundError, match="does not exist"):
        client.models.retrieve("gpt-4")


def test_a_value_the_server_cannot_honour_is_the_clients_bad_request(client):
    with pytest.raises(openai.BadRequestError, match=r"n=1") as refused:
        client.completions.create(model="tiny", prompt=PROMPT, n=2)
    assert refused.value.param == "n"
