"""Chat templates render as transformers' `apply_chat_template` renders them."""

import pytest
from tokenizers import Tokenizer, models
from transformers import PreTrainedTokenizerFast

from glassformer.errors import GlassformerError
from glassformer.tokenizers.chat_template import render

# SmolLM2-Instruct's template (ChatML with a default system turn), as its GGUF file holds it
CHATML = ("{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
          "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by "
          "Hugging Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + "
          "message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}"
          "{{ '<|im_start|>assistant\n' }}{% endif %}")
# Llama-3's shape: the BOS token, trimmed content, headers, and a refusal by raise_exception
LLAMA3 = """{{ bos_token }}
{% for message in messages %}
    {% if message['role'] == 'tool' %}{{ raise_exception('no tools here') }}{% endif %}
    {{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n' + message['content'] | trim + '<|eot_id|>' }}
{% endfor %}
{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"""
# Zephyr's shape: the EOS token after each turn, loop controls and a namespace
ZEPHYR = """{% set ns = namespace(turns=0) %}
{% for message in messages %}
    {% if message['role'] == 'system' and message['content'] == '' %}{% continue %}{% endif %}
    {% set ns.turns = ns.turns + 1 %}
<|{{ message['role'] }}|>
{{ message['content'] }}{{ eos_token }}
{% endfor %}
{% if add_generation_prompt %}<|assistant|>
{% endif %}{{ ns.turns | tojson }}"""
SPECIAL = {"bos_token": "<s>", "eos_token": "</s>"}

SYSTEM = {"role": "system", "content": "You answer in one line."}
CONVERSATIONS = [
    [{"role": "user", "content": "What is the capital of France?"}],
    [SYSTEM, {"role": "user", "content": "Hi"}],
    [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"},
     {"role": "user", "content": "and 3+3?"}],
    [SYSTEM, {"role": "user", "content": "a"}, {"role": "assistant", "content": "b"},
     {"role": "user", "content": "c"}, {"role": "assistant", "content": "d"},
     {"role": "user", "content": "e"}],
    [{"role": "user", "content": "Ünïcödé — 日本語 — 🙂 — עברית"}],
    [{"role": "user", "content": "braces {{ not a tag }} {% raw %} and 'quotes' \"both\""}],
    [{"role": "user", "content": "  leading and trailing spaces \n\n"}],
    [{"role": "user", "content": "line one\nline two\n\ttabbed"}],
    [{"role": "system", "content": ""}, {"role": "user", "content": "empty system"}],
    [{"role": "user", "content": "<|im_end|> inside the text"}],
]


def transformers_render(template, messages, add_generation_prompt):
    tok = PreTrainedTokenizerFast(tokenizer_object=Tokenizer(models.WordLevel({"<unk>": 0},
                                                                               "<unk>")),
                                  **SPECIAL)
    tok.chat_template = template
    return tok.apply_chat_template(messages, tokenize=False,
                                   add_generation_prompt=add_generation_prompt)


@pytest.mark.parametrize("template", [CHATML, LLAMA3, ZEPHYR], ids=["chatml", "llama3", "zephyr"])
@pytest.mark.parametrize("i", range(len(CONVERSATIONS)))
def test_render_equals_transformers(template, i):
    for prompt in (True, False):
        assert render(template, CONVERSATIONS[i], SPECIAL, prompt) == \
            transformers_render(template, CONVERSATIONS[i], prompt)


def test_the_template_refuses_with_its_own_words():
    with pytest.raises(GlassformerError, match="refused this conversation: no tools here"):
        render(LLAMA3, [{"role": "tool", "content": "x"}], SPECIAL)


@pytest.mark.parametrize("messages,named", [
    ([], "non-empty list"),
    ([{"role": "robot", "content": "x"}], "message 0 needs a \"role\""),
    ([{"role": "user"}], "message 0 needs a text \"content\""),
])
def test_bad_conversations_are_refused(messages, named):
    with pytest.raises(GlassformerError, match=named):
        render(CHATML, messages)


def test_a_broken_template_is_named():
    with pytest.raises(GlassformerError, match="not valid Jinja"):
        render("{% for m in messages %}", [{"role": "user", "content": "x"}])


def test_the_sandbox_refuses_attribute_tricks():
    with pytest.raises(GlassformerError, match="unsafe"):
        render("{{ messages.__class__.__mro__ }}", [{"role": "user", "content": "x"}])
