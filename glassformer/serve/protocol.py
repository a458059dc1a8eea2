"""The API's wire format: requests checked field by field, and the JSON answers.

Completions and chat completions follow OpenAI's APIs (requests, responses, stream chunks,
errors), with top_k as an extension; the playground's inspect requests use the same sampling fields. Every
field of OpenAI's request is accepted; a value this server cannot honour (n or best_of above 1,
a suffix, a logit_bias) is refused by name. Every problem with a request becomes an ApiError: a
4xx status and OpenAI's error shape, {"error": {"message", "type", "param", "code"}}, whose
message names the field.
"""

import difflib
import json
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from glassformer.config import SampleConfig
from glassformer.generate.sampler import Finish


class ApiError(Exception):
    """A request the server will not run: answered with `status` and OpenAI's error shape."""

    def __init__(self, status: int, message: str, param: str | None = None,
                 kind: str = "invalid_request_error", code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.param, self.kind, self.code = (
            status, message, param, kind, code)

    def body(self) -> dict:
        return error_body(self.message, self.kind, self.param, self.code)


def error_body(message: str, kind: str, param: str | None = None, code: str | None = None) -> dict:
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


class Strict(BaseModel):
    """A request body: unknown fields are errors, and no value is converted (a string is not
    a number, 1.0 is not an integer)."""

    model_config = ConfigDict(extra="forbid", strict=True)


class Sampling(Strict):
    """How the next token is drawn (the sampler's filters, in its order)."""

    temperature: float = Field(1.0, ge=0, le=2)
    """0 = greedy; below 1 sharper, above flatter."""
    top_k: int = Field(0, ge=0)
    """Keep the k most likely tokens; 0 keeps all (an extension to OpenAI's fields)."""
    top_p: float = Field(1.0, gt=0, le=1)
    """Keep the smallest set of tokens whose probability reaches p."""

    def setting(self) -> SampleConfig:
        """These filters alone (what the distribution view shows)."""
        return SampleConfig(temperature=self.temperature, top_k=self.top_k or None,
                            top_p=self.top_p)


class StreamOptions(Strict):
    """A streamed completion's options."""

    include_usage: bool = False
    """Send one more chunk before [DONE]: no choices, and the usage of the whole completion."""
    include_obfuscation: bool = True
    """Accepted for OpenAI's clients; this server sends no padding fields either way."""


class Generation(Sampling):
    """What completions and chat completions share: how much, where to stop, how to send."""

    model: str | None = None
    """Accepted for OpenAI's clients; the server has one model and answers with its name."""
    max_tokens: int | None = Field(None, ge=1)
    """Tokens to generate at most (None: 16 for a completion, the server's limit for a chat)."""
    stop: str | list[str] | None = None
    """A stop string or a list of them: the text ends before the first that comes."""
    stream: bool = False
    """Send the text as server-sent events while it is generated."""
    stream_options: StreamOptions | None = None
    """What a streamed completion sends besides its text (None: the defaults)."""
    seed: int | None = Field(None, ge=0, lt=2**63)
    """Seed for sampling: the same request gives the same text."""
    presence_penalty: float = Field(0.0, ge=-2, le=2)
    """Subtracted from the logit of every token generated so far."""
    frequency_penalty: float = Field(0.0, ge=-2, le=2)
    """Subtracted, times its count, from the logit of each token generated so far."""
    n: int = Field(1, ge=1)
    """Completions to return: one (n=1) here."""
    logit_bias: dict[str, float] | None = None
    """Biases by OpenAI's token ids: none here (null or {})."""
    user: str | None = None
    """Who the end user is, for OpenAI's abuse checks; accepted and not used."""

    def stops(self) -> tuple[str, ...]:
        if self.stop is None:
            return ()
        return (self.stop,) if isinstance(self.stop, str) else tuple(self.stop)

    def refuse_unsupported(self) -> None:
        """An ApiError naming the first field whose value this server cannot honour."""
        if self.n != 1:
            raise ApiError(400, f"n: this server returns one completion per request (n=1), got "
                                f"{self.n}; send {self.n} requests (with different seeds)", "n")
        if self.logit_bias:
            raise ApiError(400, "logit_bias: not supported (null or {} only): its keys would be "
                                "OpenAI's token ids, not this model's", "logit_bias")

    def sample_config(self, max_tokens: int) -> SampleConfig:
        return SampleConfig(max_new_tokens=max_tokens, temperature=self.temperature,
                            top_k=self.top_k or None, top_p=self.top_p,
                            presence_penalty=self.presence_penalty,
                            frequency_penalty=self.frequency_penalty, stop=self.stops(),
                            seed=self.seed)


class CompletionRequest(Generation):
    """POST /v1/completions: every field of OpenAI's, and top_k."""

    prompt: str = Field(min_length=1)
    logprobs: int | None = Field(None, ge=0, le=5)
    """Return each token's log probability and those of the `logprobs` most likely tokens at its
    place (views.logprobs says which probabilities)."""
    echo: bool = False
    """Put the prompt before the completion's text."""
    best_of: int = Field(1, ge=1)
    """Completions to sample and pick the likeliest from: one (best_of=1) here."""
    suffix: str | None = None
    """Text that comes after the completion (insertion): none here."""

    def refuse_unsupported(self) -> None:
        super().refuse_unsupported()
        if self.best_of != 1:
            raise ApiError(400, f"best_of: this server samples one completion per request "
                                f"(best_of=1), got {self.best_of}", "best_of")
        if self.suffix:
            raise ApiError(400, "suffix: this server does not insert text between a prompt and a "
                                "suffix; send suffix null", "suffix")
        if self.echo and self.logprobs is not None:
            raise ApiError(400, "echo: with logprobs, the prompt's tokens would need theirs, "
                                "which this server does not compute; send echo false or "
                                "logprobs null", "echo")


class Message(Strict):
    """One turn of a conversation, as OpenAI's chat API writes it (text content only)."""

    role: Literal["system", "developer", "user", "assistant"]
    content: str
    name: str | None = None
    """Accepted for OpenAI's clients; chat templates do not read it."""

    def turn(self) -> dict:
        """The turn as a chat template reads it (OpenAI's "developer" is the system role)."""
        return {"role": "system" if self.role == "developer" else self.role,
                "content": self.content}


class ChatRequest(Generation):
    """POST /v1/chat/completions: OpenAI's chat fields for text conversations, and top_k."""

    messages: list[Message] = Field(min_length=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    """OpenAI's newer name for max_tokens (give one of them)."""
    logprobs: bool = False
    """Log probabilities of the reply's tokens: not here (false only)."""

    def refuse_unsupported(self) -> None:
        super().refuse_unsupported()
        if self.logprobs:
            raise ApiError(400, "logprobs: not supported for chat completions (false only); "
                                "/v1/completions returns them", "logprobs")
        if self.max_tokens is not None and self.max_completion_tokens is not None:
            raise ApiError(400, "max_completion_tokens: give it or max_tokens, not both",
                           "max_completion_tokens")


class ChatTextRequest(Strict):
    """POST /v1/chat/text: the text `messages` become under the run's chat template, the
    assistant's turn opened."""

    messages: list[Message] = Field(min_length=1)


class DistributionRequest(Sampling):
    """POST /v1/distribution: the next token after `text`."""

    text: str = Field(min_length=1)
    top: int = Field(10, ge=1, le=100)
    """Candidates listed, the most likely first."""


class AttentionRequest(Strict):
    """POST /v1/attention: the attention weights of `text`."""

    text: str = Field(min_length=1)
    position: int | None = Field(None, ge=0)
    """The query token whose weights onto the tokens before it are wanted; None: every query
    (the whole matrix; the text must fit the model's window)."""


def parse(cls: type[Strict], raw: bytes) -> Strict:
    """The request `cls` in body `raw`, or an ApiError naming what is wrong."""
    try:
        data = json.loads(raw, parse_constant=_reject_constant)
    except ValueError as err:  # JSONDecodeError, UnicodeDecodeError, NaN or Infinity
        raise ApiError(400, f"the body is not valid JSON: {err}") from None
    if not isinstance(data, dict):
        raise ApiError(400, f"the body must be a JSON object, got {type(data).__name__}")
    try:
        return cls.model_validate(data)
    except ValidationError as err:  # an unknown field first: it may be a misspelt required one
        first = min(err.errors(), key=lambda e: e["type"] != "extra_forbidden")
        raise _field_error(cls, first) from None


def _reject_constant(name: str):
    raise ValueError(f"{name} is not a JSON number")


def _field_error(cls: type[Strict], error: dict) -> ApiError:
    field = str(error["loc"][0]) if error["loc"] else None
    if error["type"] == "extra_forbidden" and len(error["loc"]) > 1:  # inside an object field
        path = ".".join(map(str, error["loc"]))
        return ApiError(400, f"unknown field {path!r}", field)
    if error["type"] == "extra_forbidden":
        known = list(cls.model_fields)
        close = difflib.get_close_matches(field, known, n=1)
        hint = f"did you mean {close[0]!r}?" if close else f"known fields: {', '.join(known)}"
        return ApiError(400, f"unknown field {field!r}; {hint}", field)
    if error["type"] == "missing":
        return ApiError(400, f"{field!r} is required", field)
    shown = json.dumps(error["input"])
    shown = shown if len(shown) <= 40 else shown[:37] + "..."
    path = ".".join(map(str, error["loc"]))  # e.g. messages.0.role
    return ApiError(400, f"{path}: {error['msg'].lower()}, got {shown}", field)


def completion(head: dict, text: str, finish: Finish, prompt_tokens: int,
               logprobs: dict | None = None) -> dict:
    """A whole completion, as OpenAI's API answers one; `head` is {id, object, created, model};
    `logprobs` is views.logprobs's dict (or None)."""
    return head | {"choices": [{"text": text, "index": 0, "logprobs": logprobs,
                                "finish_reason": finish.reason}],
                   "usage": usage(prompt_tokens, finish)}


def chunk(head: dict, text: str, finish_reason: str | None = None,
          logprobs: dict | None = None) -> dict:
    """One piece of a streamed completion; the last has a finish_reason and no text."""
    return head | {"choices": [{"text": text, "index": 0, "logprobs": logprobs,
                                "finish_reason": finish_reason}]}


def chat_completion(head: dict, text: str, finish: Finish, prompt_tokens: int) -> dict:
    """A whole chat completion: the assistant's message."""
    return head | {"choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                                "logprobs": None, "finish_reason": finish.reason}],
                   "usage": usage(prompt_tokens, finish)}


def chat_chunk(head: dict, delta: dict, finish_reason: str | None = None) -> dict:
    """One piece of a streamed chat completion: the first delta names the role, the next ones
    carry content, the last is empty with the finish_reason."""
    return head | {"choices": [{"index": 0, "delta": delta, "logprobs": None,
                                "finish_reason": finish_reason}]}


def usage_chunk(head: dict, prompt_tokens: int, finish: Finish) -> dict:
    """The chunk after the last of a stream whose stream_options ask for the usage."""
    return head | {"choices": [], "usage": usage(prompt_tokens, finish)}


def usage(prompt_tokens: int, finish: Finish) -> dict:
    """The tokens a completion read and wrote."""
    return {"prompt_tokens": prompt_tokens, "completion_tokens": finish.tokens,
            "total_tokens": prompt_tokens + finish.tokens}


def event(data: dict | str) -> str:
    """One server-sent event: `data: JSON` and a blank line ("[DONE]" ends a stream)."""
    return f"data: {data if isinstance(data, str) else json.dumps(data)}\n\n"
