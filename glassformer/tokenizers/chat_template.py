"""Chat templates: a conversation as the one string an instruct model was trained to read.

A checkpoint ships its template as Jinja source (GGUF metadata `tokenizer.chat_template`, or
`chat_template` in tokenizer_config.json). It is rendered here as `transformers`'
`apply_chat_template` renders it: a sandboxed Jinja environment with blocks trimmed, loop
controls, `raise_exception` and a `tojson` that leaves non-ASCII alone; the variables are
`messages`, `add_generation_prompt` and the tokenizer's special tokens (`bos_token`, ...).
A `{% generation %}...{% endgeneration %}` block (transformers' mark of the assistant's text)
renders its body as it is.

    render(template, [{"role": "user", "content": "Hi"}], {"eos_token": "<|im_end|>"})
    -> "<|im_start|>system\\n...<|im_end|>\\n<|im_start|>user\\nHi<|im_end|>\\n<|im_start|>assistant\\n"

A template is code from a checkpoint: the sandbox refuses attribute tricks, and nothing it
renders is executed.
"""

from __future__ import annotations

import json
from datetime import datetime
from functools import lru_cache

from glassformer.errors import GlassformerError

ROLES = ("system", "user", "assistant", "tool")


def render(template: str, messages: list[dict], special_tokens: dict[str, str] | None = None,
           add_generation_prompt: bool = True) -> str:
    """The text of `messages` ({"role", "content"} dicts, oldest first) under `template`,
    ending with the assistant's turn opened when `add_generation_prompt`."""
    check_messages(messages)
    import jinja2

    try:
        return compiled(template).render(messages=messages,
                                         add_generation_prompt=add_generation_prompt,
                                         **(special_tokens or {}))
    except jinja2.TemplateError as err:  # raise_exception in the template, or a broken one
        raise GlassformerError(f"the chat template refused this conversation: {err}") from None


def check_messages(messages: list[dict]) -> None:
    """Refuse what no template can render: a message without a known role or text content."""
    if not isinstance(messages, list) or not messages:
        raise GlassformerError("a conversation is a non-empty list of messages")
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in ROLES:
            raise GlassformerError(f"message {i} needs a \"role\" of {', '.join(ROLES)}; got "
                                   f"{message!r:.80}")
        if not isinstance(message.get("content"), str):
            raise GlassformerError(f"message {i} needs a text \"content\"")


@lru_cache(maxsize=8)
def compiled(template: str):
    """`template` compiled once in transformers' environment."""
    import jinja2.ext
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message):
        raise jinja2.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                          sort_keys=sort_keys)

    class Generation(jinja2.ext.Extension):
        """{% generation %}BODY{% endgeneration %} -> BODY."""

        tags = {"generation"}

        def parse(self, parser):
            lineno = next(parser.stream).lineno
            body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
            return jinja2.nodes.CallBlock(self.call_method("_body"), [], [], body).set_lineno(
                lineno)

        def _body(self, caller):
            return caller()

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=[jinja2.ext.loopcontrols, Generation])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
    try:
        return env.from_string(template)
    except jinja2.TemplateSyntaxError as err:
        raise GlassformerError(f"the checkpoint's chat template is not valid Jinja (line "
                               f"{err.lineno}: {err.message})") from None


def conversation(tokenizer, messages: list[dict], add_generation_prompt: bool = True) -> str:
    """`messages` as the text `tokenizer`'s checkpoint was trained to read (its chat template,
    with its special tokens' names), the assistant's turn opened."""
    if not has_chat_template(tokenizer):
        raise GlassformerError("this model's tokenizer has no chat template (it is not an "
                               "instruct checkpoint); continue text instead")
    chat = tokenizer.chat
    names = {k: v for k, v in chat.items() if k.endswith("_token") and v is not None}
    return render(chat["chat_template"], messages, names, add_generation_prompt)


def has_chat_template(tokenizer) -> bool:
    """Whether `tokenizer` came with a checkpoint's chat template (an instruct model's; a char
    tokenizer has none)."""
    return bool(_chat(tokenizer).get("chat_template"))


def end_of_turn(tokenizer) -> str | None:
    """The text of the token that ends an assistant's turn (the checkpoint's EOS), or None."""
    return _chat(tokenizer).get("eos_token")


def _chat(tokenizer) -> dict:
    return getattr(tokenizer, "chat", None) or {}  # only HFTokenizer has one
