"""The playground's HTTP server: one run, one page and a JSON API (Starlette, served by uvicorn).

  GET  /                  the page (static/index.html; its script and style under /static)
  GET  /v1/models         the run, as OpenAI's list of models
  GET  /v1/models/{id}    the run as OpenAI's model object (404 for any other id)
  GET  /v1/status         the limits, and how many completions are running
  POST /v1/completions    OpenAI's completions; with "stream": true, as server-sent events
  POST /v1/distribution   the next-token candidates after a text, under a sampling setting
  POST /v1/attention      the attention weights of a text, per layer and head

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
from glassformer.serve import protocol, views
from glassformer.serve.limits import Limits, Slots
from glassformer.serve.protocol import ApiError
from glassformer.train.checkpoint import Run, load_run

STATIC = Path(__file__).parent / "static"
log = logging.getLogger(__name__)


def create_app(run: Run | str | Path, limits: Limits = Limits(), name: str | None = None):
    """The playground app (a Starlette ASGI app) for `run`: a Run loaded on the CPU, or a run
    directory (loaded so). `name` is the model's name in answers (default: the directory's)."""
    if not isinstance(run, Run):
        name = name or Path(run).name
        run = load_run(run)
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
                Route("/v1/distribution", playground.distribution, methods=["POST"]),
                Route("/v1/attention", playground.attention, methods=["POST"]),
                Mount("/static", StaticFiles(directory=STATIC), name="static")],
        exception_handlers={ApiError: _api_error, GlassformerError: _user_error,
                            HTTPException: _http_error, Exception: _server_error})
    app.state.playground = playground
    return app


def serve(run_dir, host: str = "127.0.0.1", port: int = 8000, limits: Limits = Limits()) -> None:
    """Serve the playground of `run_dir` until interrupted (Ctrl-C)."""
    app = create_app(run_dir, limits)
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
                             "n_head": m.n_head, "vocab_size": m.vocab_size})

    async def completions(self, request):
        req = protocol.parse(protocol.CompletionRequest, await self._body(request))
        prompt_tokens = len(self._encode(req.prompt, "prompt"))
        cfg = self._sample_config(req)
        if not self.slots.take():
            raise ApiError(429, f"{self.limits.max_concurrent} completions are running, as many "
                                "as this server runs at once; try again shortly",
                           kind="rate_limit_error", code="rate_limit_exceeded")
        pieces = stream_pieces(self.run.model, self.run.tokenizer, req.prompt, cfg)

        def finish():  # however the completion ends: its generator closed, its slot back
            pieces.close()
            self.slots.give_back()

        head = {"id": f"cmpl-{uuid.uuid4().hex}", "object": "text_completion",
                "created": int(time.time()), "model": self.name}
        echo = req.prompt if req.echo else ""
        steps = self._advance(request, pieces, req.logprobs, len(echo))
        if req.stream:
            usage = req.stream_options is not None and req.stream_options.include_usage
            events = self._events(steps, head, echo, prompt_tokens if usage else None)
            return EventStream(events, on_close=finish)
        text, logprobs, end = [echo], [], None
        try:
            async for step in steps:
                if isinstance(step, Finish):
                    end = step
                else:
                    piece, piece_logprobs = step
                    text.append(piece)
                    logprobs.append(piece_logprobs)
        finally:
            finish()
        if end is None:  # the client went away; nobody reads this
            return Response(status_code=499)
        logprobs = None if req.logprobs is None else views.joined_logprobs(logprobs)
        return JSONResponse(protocol.completion(head, "".join(text), end, prompt_tokens, logprobs))

    def _sample_config(self, req: protocol.CompletionRequest):
        """The request's SampleConfig, within this server's limits and abilities."""
        req.refuse_unsupported()
        if req.max_tokens > self.limits.max_tokens:
            raise ApiError(400, f"max_tokens: at most {self.limits.max_tokens} on this server, "
                                f"got {req.max_tokens}", "max_tokens")
        stops = req.stops()
        if len(stops) > self.limits.max_stops:
            raise ApiError(400, f"stop: at most {self.limits.max_stops} stop strings, got "
                                f"{len(stops)}", "stop")
        if not all(stops):
            raise ApiError(400, "stop: a stop string must not be empty", "stop")
        return req.sample_config()

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
