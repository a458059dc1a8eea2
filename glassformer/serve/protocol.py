"""The API's wire format: requests checked field by field, and the JSON answers.

Completions follow OpenAI's completions API (requests, responses, stream chunks, errors), with
top_k and seed as extensions; the playground's inspect requests use the same sampling fields.
Every problem with a request becomes an ApiError: a 4xx status and OpenAI's error shape,
{"error": {"message", "type", "param", "code"}}, whose message names the field.
"""

import difflib
import json

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


class CompletionRequest(Sampling):
    """POST /v1/completions."""

    prompt: str = Field(min_length=1)
    model: str | None = None
    """Accepted for OpenAI's clients; the server has one model and answers with its name."""
    max_tokens: int = Field(16, ge=1)
    stop: str | list[str] | None = None
    """A stop string or a list of them: the text ends before the first that comes."""
    stream: bool = False
    """Send the text as server-sent events while it is generated."""
    seed: int | None = Field(None, ge=0, lt=2**63)
    """Seed for sampling: the same request gives the same text (an extension)."""

    def stops(self) -> tuple[str, ...]:
        if self.stop is None:
            return ()
        return (self.stop,) if isinstance(self.stop, str) else tuple(self.stop)

    def sample_config(self) -> SampleConfig:
        return SampleConfig(max_new_tokens=self.max_tokens, temperature=self.temperature,
                            top_k=self.top_k or None, top_p=self.top_p, stop=self.stops(),
                            seed=self.seed)


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
    if error["type"] == "extra_forbidden":
        known = list(cls.model_fields)
        close = difflib.get_close_matches(field, known, n=1)
        hint = f"did you mean {close[0]!r}?" if close else f"known fields: {', '.join(known)}"
        return ApiError(400, f"unknown field {field!r}; {hint}", field)
    if error["type"] == "missing":
        return ApiError(400, f"{field!r} is required", field)
    shown = json.dumps(error["input"])
    shown = shown if len(shown) <= 40 else shown[:37] + "..."
    return ApiError(400, f"{field}: {error['msg'].lower()}, got {shown}", field)


def completion(head: dict, text: str, finish: Finish, prompt_tokens: int) -> dict:
    """A whole completion, as OpenAI's API answers one; `head` is {id, object, created, model}."""
    return head | {
        "choices": [{"text": text, "index": 0, "logprobs": None, "finish_reason": finish.reason}],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": finish.tokens,
                  "total_tokens": prompt_tokens + finish.tokens}}


def chunk(head: dict, text: str, finish_reason: str | None = None) -> dict:
    """One piece of a streamed completion; the last has a finish_reason and no text."""
    return head | {"choices": [{"text": text, "index": 0, "logprobs": None,
                                "finish_reason": finish_reason}]}


def event(data: dict | str) -> str:
    """One server-sent event: `data: JSON` and a blank line ("[DONE]" ends a stream)."""
    return f"data: {data if isinstance(data, str) else json.dumps(data)}\n\n"
