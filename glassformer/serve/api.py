"""The playground's HTTP server: one run, one page and a JSON API (Starlette, served by uvicorn).

  GET  /                  the page (static/index.html; its script and style under /static)
  GET  /v1/models         the run, as OpenAI's list of models
  GET  /v1/models/{id}    the run as OpenAI's model object (404 for any other id)
  GET  /v1/status         the limits, and how many completions are running
  POST /v1/completions    OpenAI's completions; with "stream": true, as server-sent events
  POST /v1/chat/completions  OpenAI's chat completions, for a run whose tokenizer has a chat
                          template (an instruct checkpoint); streamed the same way
  POST /v1/chat/text      the text a conversation becomes under that template
  POST /v1/distribution   the next-token candidates after a text, under a sampling setting
  POST /v1/attention      the attention weights of a text, per layer and head
  POST /v1/lens           the logit lens at one token of a text, per layer (serve/lens.py)

The model works in worker threads, one call at a time (a lock: an attention capture switches
the model's attention kernel while it runs), so the event loop stays free for other requests. A
completion advances one piece of text per call, and stops when its client goes away.
"""

import dataclasses
import errno
import logging
import socket
import threading
import time
import uuid
from pathlib import Path

import uvicorn
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from glassformer.errors import GlassformerError, article
from glassformer.generate.sampler import Finish, stream_pieces
from glassformer.model.quantize import calibration_ids, quantize
from glassformer.serve import lens, protocol, views
from glassformer.serve.limits import Limits, Slots
from glassformer.serve.protocol import ApiError
from glassformer.tokenizers.chat_template import conversation, end_of_turn, has_chat_template
from glassformer.train.checkpoint import Run, load_run

STATIC = Path(__file__).parent / "static"
log = logging.getLogger(__name__)


def create_app(run: Run | str | Path, limits: Limits = Limits(), name: str | None = None,
               quantization: str = "none"):
    """The playground app (a Starlette ASGI app) for `run`: a Run loaded on the CPU, or a run
    directory (loaded so, its weights quantized as `quantization` says: model/quantize.py).
    `name` is the model's name in answers (default: the directory's)."""
    if not isinstance(run, Run):
        name = name or Path(run).name
        run = load_run(run)
        quantize(run.model, quantization, calibration_ids(run.tokenizer))
    if run.cfg.model.family != "gpt":
        family = run.cfg.model.family
        raise GlassformerError(f"the playground needs a gpt run; this one is {article(family)} "
                               f"{family} model (task {run.cfg.train.task!r})")
    playground = Playground(run, limits, name or "glassformer")
    app = Starlette(
        routes=[Route("/", playground.page),
                Route("/v1/models", playground.models),
                Route("/v1/models/{id:path}", playground.model),
                Route("/v1/status", playground.status),
                Route("/v1/completions", playground.completions, methods=["POST"]),
                Route("/v1/chat/completions", playground.chat_completions, methods=["POST"]),
                Route("/v1/chat/text", playground.chat_text, methods=["POST"]),
                Route("/v1/distribution", playground.distribution, methods=["POST"]),
                Route("/v1/attention", playground.attention, methods=["POST"]),
                lens.route(playground),
                Mount("/static", StaticFiles(directory=STATIC), name="static")],
        exception_handlers={ApiError: _api_error, GlassformerError: _user_error,
                            HTTPException: _http_error, Exception: _server_error})
    app.state.playground = playground
    return app


def serve(run_dir, host: str = "127.0.0.1", port: int = 8000, limits: Limits = Limits(),
          quantization: str = "none") -> None:
    """Serve the playground of `run_dir` until interrupted (Ctrl-C)."""
    app = create_app(run_dir, limits, quantization=quantization)
    sock = listening_socket(host, port)  # taken first: a busy port is one clear error
    print(f"playground of {run_dir}: http://{host}:{port}/ (Ctrl-C to stop)", flush=True)
    run_server(app, sock)


def run_server(app, sock: socket.socket) -> None:
    """uvicorn serving `app` on the listening socket `sock` until interrupted."""
    uvicorn.Server(uvicorn.Config(app, log_level="info")).run(sockets=[sock])


def listening_socket(host: str, port: int) -> socket.socket:
    """A socket listening on host:port, or a GlassformerError that says why not and what to do
    (uvicorn's own is "[Errno 98] error while attempting to bind")."""
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        return socket.create_server((host, port), family=family)
    except socket.gaierror as err:
        raise GlassformerError(f"--host {host!r} is not an address of this machine "
                               f"({err.strerror})") from None
    except OSError as err:
        if err.errno == errno.EADDRINUSE:
            raise GlassformerError(f"port {port} on {host} is in use (another `glassformer "
                                   "serve`?); choose another with --port") from None
        raise GlassformerError(f"cannot listen on {host}:{port}: {err.strerror}") from None


class Playground:
    """The endpoints, and what they share: the run, the model's lock and the slots."""

    def __init__(self, run: Run, limits: Limits, name: str):
        self.run, self.limits, self.name = run, limits, name
        self.created = int(time.time())
        self.lock = threading.Lock()  # one model call at a time
        self.slots = Slots(limits.max_concurrent)

    async def page(self, request):
        return FileResponse(STATIC / "index.html")

    async def models(self, request):
        return JSONResponse({"object": "list", "data": [self._model_object()]})

    async def model(self, request):
        name = request.path_params["id"]
        if name != self.name:
            raise ApiError(404, f"the model {name!r} does not exist; this server has one, "
                                f"{self.name!r}", code="model_not_found")
        return JSONResponse(self._model_object())

    def _model_object(self) -> dict:
        """The run as OpenAI's model object."""
        return {"id": self.name, "object": "model", "created": self.created,
                "owned_by": "glassformer"}

    async def status(self, request):
        m = self.run.cfg.model
        return JSONResponse({"model": self.name, "running": self.slots.running,
                             "limits": dataclasses.asdict(self.limits),
                             "block_size": m.block_size, "n_layer": m.n_layer,
                             "n_head": m.n_head, "vocab_size": m.vocab_size,
                             "chat": has_chat_template(self.run.tokenizer)})

    async def chat_text(self, request):
        """The text a conversation becomes under the run's chat template (what the page's
        next-token and attention views read in chat mode)."""
        req = protocol.parse(protocol.ChatTextRequest, await self._body(request))
        return JSONResponse({"text": self._conversation(req.messages)})

    def _conversation(self, messages: list[protocol.Message]) -> str:
        try:
            return conversation(self.run.tokenizer, [m.turn() for m in messages])
        except GlassformerError as err:  # no template, or one that refuses these turns
            raise ApiError(400, f"messages: {err}", "messages") from None

    async def completions(self, request):
        req = protocol.parse(protocol.CompletionRequest, await self._body(request))
        prompt_tokens = len(self._encode(req.prompt, "prompt"))
        cfg = self._sample_config(req, req.max_tokens or 16)
        head = {"id": f"cmpl-{uuid.uuid4().hex}", "object": "text_completion",
                "created": int(time.time()), "model": self.name}
        echo = req.prompt if req.echo else ""
        steps, finish = self._start(request, req.prompt, cfg, req.logprobs, len(echo))
        if req.stream:
            return EventStream(self._events(steps, head, echo, self._usage(req, prompt_tokens)),
                               on_close=finish)
        parts, end = await self._collect(steps, finish)
        if end is None:  # the client went away; nobody reads this
            return Response(status_code=499)
        text = echo + "".join(piece for piece, _ in parts)
        logprobs = None if req.logprobs is None else views.joined_logprobs([lp for _, lp in parts])
        return JSONResponse(protocol.completion(head, text, end, prompt_tokens, logprobs))

    async def chat_completions(self, request):
        req = protocol.parse(protocol.ChatRequest, await self._body(request))
        prompt = self._conversation(req.messages)
        prompt_tokens = len(self._encode(prompt, "messages"))
        cfg = self._sample_config(req, req.max_completion_tokens or req.max_tokens or
                                  self.limits.max_tokens)
        end_token = end_of_turn(self.run.tokenizer)
        if end_token:  # the reply ends where the template ends a turn
            cfg = dataclasses.replace(cfg, stop=cfg.stop + (end_token,))
        head = {"id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion",
                "created": int(time.time()), "model": self.name}
        steps, finish = self._start(request, prompt, cfg, None, 0)
        if req.stream:
            events = self._chat_events(steps, head | {"object": "chat.completion.chunk"},
                                       self._usage(req, prompt_tokens))
            return EventStream(events, on_close=finish)
        parts, end = await self._collect(steps, finish)
        if end is None:  # the client went away; nobody reads this
            return Response(status_code=499)
        text = "".join(piece for piece, _ in parts)
        return JSONResponse(protocol.chat_completion(head, text, end, prompt_tokens))

    @staticmethod
    def _usage(req: protocol.Generation, prompt_tokens: int) -> int | None:
        """prompt_tokens when a stream should end with the usage, else None."""
        wanted = req.stream_options is not None and req.stream_options.include_usage
        return prompt_tokens if wanted else None

    def _sample_config(self, req: protocol.Generation, max_tokens: int):
        """The request's SampleConfig, within this server's limits and abilities."""
        req.refuse_unsupported()
        if max_tokens > self.limits.max_tokens:
            raise ApiError(400, f"max_tokens: at most {self.limits.max_tokens} on this server, "
                                f"got {max_tokens}", "max_tokens")
        stops = req.stops()
        if len(stops) > self.limits.max_stops:
            raise ApiError(400, f"stop: at most {self.limits.max_stops} stop strings, got "
                                f"{len(stops)}", "stop")
        if not all(stops):
            raise ApiError(400, "stop: a stop string must not be empty", "stop")
        return req.sample_config(max_tokens)

    def _start(self, request, prompt: str, cfg, top: int | None, offset: int):
        """(steps, finish): the continuation of `prompt` as _advance's steps, holding one of the
        server's completion slots (429 when none is free) until finish() is called, which must
        happen however the completion ends (finished, cut short, or never started)."""
        if not self.slots.take():
            raise ApiError(429, f"{self.limits.max_concurrent} completions are running, as many "
                                "as this server runs at once; try again shortly",
                           kind="rate_limit_error", code="rate_limit_exceeded")
        pieces = stream_pieces(self.run.model, self.run.tokenizer, prompt, cfg)

        def finish():
            pieces.close()
            self.slots.give_back()
        return self._advance(request, pieces, top, offset), finish

    async def _collect(self, steps, finish) -> tuple[list, Finish | None]:
        """The steps of a completion that is not streamed, and its Finish (None when the client
        went away first)."""
        parts, end = [], None
        try:
            async for step in steps:
                if isinstance(step, Finish):
                    end = step
                else:
                    parts.append(step)
        finally:
            finish()
        return parts, end

    async def distribution(self, request):
        req = protocol.parse(protocol.DistributionRequest, await self._body(request))
        ids = self._encode(req.text, "text")
        view = await self._on_model(views.distribution, self.run, ids, req.setting(), req.top)
        return JSONResponse({"model": self.name} | view)

    async def attention(self, request):
        req = protocol.parse(protocol.AttentionRequest, await self._body(request))
        ids = self._encode(req.text, "text")
        T = self.run.cfg.model.block_size
        if req.position is None and len(ids) > T:
            raise ApiError(413, f"text: {len(ids)} tokens, but the whole attention matrix is "
                                f"drawn for at most {T} (the model's block_size); ask for one "
                                "position", "text")
        if req.position is not None and req.position >= len(ids):
            raise ApiError(400, f"position: the text has {len(ids)} tokens (positions 0 to "
                                f"{len(ids) - 1}), got {req.position}", "position")
        view = await self._on_model(views.attention, self.run, ids, req.position)
        return JSONResponse({"model": self.name} | view)

    async def _body(self, request) -> bytes:
        """The request body; 413 past limits.max_body_bytes, read no further."""
        limit, size, parts = self.limits.max_body_bytes, 0, []
        async for part in request.stream():
            size += len(part)
            if size > limit:
                raise ApiError(413, f"the request body is larger than {limit} bytes")
            parts.append(part)
        return b"".join(parts)

    def _encode(self, text: str, param: str) -> list[int]:
        """The ids of a text sent as `param`: at most max_prompt_chars, at least one token."""
        if len(text) > self.limits.max_prompt_chars:
            raise ApiError(413, f"{param}: {len(text)} characters, more than the "
                                f"{self.limits.max_prompt_chars} this server takes", param)
        try:
            ids = self.run.tokenizer.encode(text)
        except GlassformerError as err:  # e.g. characters the tokenizer has never seen
            raise ApiError(400, f"{param}: {err}", param) from None
        if not ids:
            raise ApiError(400, f"{param}: the text has no tokens", param)
        return ids

    async def _on_model(self, fn, *args):
        """fn(*args) in a worker thread, holding the model's lock."""
        return await run_in_threadpool(self._locked, fn, *args)

    def _locked(self, fn, *args):
        with self.lock:
            return fn(*args)

    async def _advance(self, request, pieces, top: int | None, offset: int):
        """Yield (text, logprobs) for each piece of `pieces` (a stream_pieces(...) generator),
        then its Finish, each step in a worker thread; end early, without a Finish, once the
        client has gone. logprobs: views.logprobs's, with the `top` likeliest tokens and text
        offsets from `offset` on (where the first piece begins in the choice's text); None for
        top None."""
        while not await request.is_disconnected():
            step = await self._on_model(_next_or_finish, pieces)
            if isinstance(step, Finish):
                yield step
                return
            logprobs = None if top is None else views.logprobs(self.run.tokenizer, step, top,
                                                               offset)
            offset += len(step.text)
            yield step.text, logprobs

    async def _events(self, steps, head: dict, echo: str, prompt_tokens: int | None):
        """The server-sent events of a streamed completion: the prompt if echoed, its pieces,
        the finish, the usage when asked for (prompt_tokens not None), [DONE]."""
        try:
            if echo:
                yield protocol.event(protocol.chunk(head, echo))
            async for step in steps:
                if isinstance(step, Finish):
                    yield protocol.event(protocol.chunk(head, "", step.reason))
                    if prompt_tokens is not None:
                        yield protocol.event(protocol.usage_chunk(head, prompt_tokens, step))
                    yield protocol.event("[DONE]")
                else:
                    text, logprobs = step
                    yield protocol.event(protocol.chunk(head, text, logprobs=logprobs))
        except Exception:  # the status line has gone out: the error is the stream's last event
            log.exception("completion %s failed", head["id"])
            yield protocol.event(protocol.error_body("the server failed while generating; see "
                                                     "its log", "server_error"))


    async def _chat_events(self, steps, head: dict, prompt_tokens: int | None):
        """The server-sent events of a streamed chat completion: the role, the pieces of the
        reply, the finish, the usage when asked for (prompt_tokens not None), [DONE]."""
        try:
            yield protocol.event(protocol.chat_chunk(head, {"role": "assistant", "content": ""}))
            async for step in steps:
                if isinstance(step, Finish):
                    yield protocol.event(protocol.chat_chunk(head, {}, step.reason))
                    if prompt_tokens is not None:
                        yield protocol.event(protocol.usage_chunk(head, prompt_tokens, step))
                    yield protocol.event("[DONE]")
                elif step[0]:
                    yield protocol.event(protocol.chat_chunk(head, {"content": step[0]}))
        except Exception:  # the status line has gone out: the error is the stream's last event
            log.exception("chat completion %s failed", head["id"])
            yield protocol.event(protocol.error_body("the server failed while generating; see "
                                                     "its log", "server_error"))


def _next_or_finish(pieces):
    """The next piece of a stream_pieces(...) generator, or, when it is done, its Finish."""
    try:
        return next(pieces)
    except StopIteration as done:
        return done.value


class EventStream(StreamingResponse):
    """Server-sent events; `on_close` runs however the stream ends: finished, cut short by the
    client's disconnect, failed, or never started."""

    media_type = "text/event-stream"

    def __init__(self, events, on_close):
        super().__init__(events, headers={"Cache-Control": "no-cache"})
        self.on_close = on_close

    async def __call__(self, scope, receive, send):
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.on_close()


async def _api_error(request, err: ApiError):
    headers = {"Retry-After": "1"} if err.status == 429 else None
    return JSONResponse(err.body(), err.status, headers=headers)


async def _user_error(request, err: GlassformerError):
    return JSONResponse(protocol.error_body(str(err), "invalid_request_error"), 400)


async def _http_error(request, err: HTTPException):
    return JSONResponse(protocol.error_body(err.detail, "invalid_request_error"), err.status_code,
                        headers=err.headers)


async def _server_error(request, err: Exception):
    return JSONResponse(protocol.error_body("the server failed; see its log", "server_error"), 500)
