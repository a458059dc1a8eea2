"""A real server (uvicorn on a loopback port): a client that goes away mid-completion stops its
generation, streamed or not, and the server answers other requests while one generates."""

import time

import httpx
import pytest

from glassformer.serve.api import create_app
from tests.serve.conftest import LIMITS

ENDLESS = {"prompt": "From fairest", "max_tokens": LIMITS.max_tokens}  # minutes of generation


class ForwardCounter:
    """Counts the model's forward calls (one per generated token, after the prompt's)."""

    def __init__(self, model):
        self.calls = 0
        model.register_forward_pre_hook(self._count)

    def _count(self, *_):
        self.calls += 1


def wait_for(condition, seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def check_stopped(playground, counter) -> None:
    """The generation gave its slot back long before max_tokens, and the model is idle."""
    wait_for(lambda: playground.slots.running == 0)
    steps = counter.calls
    time.sleep(0.3)
    assert counter.calls == steps < LIMITS.max_tokens


@pytest.fixture
def live(run, serve):
    """(base URL, the app's Playground, a ForwardCounter on its model) of a running server."""
    app = create_app(run, LIMITS)
    counter = ForwardCounter(run.model)
    with serve(app) as url:
        yield url, app.state.playground, counter


def test_a_stream_stops_when_its_client_disconnects(live):
    url, playground, counter = live
    with httpx.Client(base_url=url, timeout=30) as client:
        with client.stream("POST", "/v1/completions", json=ENDLESS | {"stream": True}) as response:
            assert response.status_code == 200
            lines = response.iter_lines()
            assert next(lines).startswith("data: {")
            wait_for(lambda: counter.calls > 20)  # it is generating ...
            status = client.get("/v1/status", timeout=5).json()  # ... and others are answered
            assert status["running"] == 1
        # leaving the block closes the connection mid-stream
    check_stopped(playground, counter)


def test_a_whole_completion_stops_when_its_client_gives_up(live):
    url, playground, counter = live
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{url}/v1/completions", json=ENDLESS, timeout=httpx.Timeout(30, read=1))
    assert counter.calls > 0
    check_stopped(playground, counter)
