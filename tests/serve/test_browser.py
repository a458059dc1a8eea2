"""The page in headless Chromium (Debian's, driven by Playwright) against a real server: type a
prompt, watch the distribution change with a slider, generate, click a token and see its
attention heatmap and its logit lens. Screenshots go to test-artifacts/ at the repository root."""

import contextlib
from pathlib import Path

import pytest

from glassformer.config import SampleConfig
from glassformer.generate.sampler import generate
from glassformer.serve.api import create_app
from glassformer.tokenizers.chat_template import conversation
from tests.serve.conftest import LIMITS

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
# This machine's network is closed: without these flags Chromium waits on connections.
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]

sync_api = pytest.importorskip("playwright.sync_api",
                               reason="playwright is not installed (pip install -e '.[test]')")
pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason=f"no Chromium at {CHROMIUM} "
                                "(Debian: apt-get install chromium)")


@contextlib.contextmanager
def opened(run, serve):
    """The page of a server of `run`, in Chromium; no script error or console error on it."""
    problems = []
    with serve(create_app(run, LIMITS)) as url, sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.on("pageerror", lambda err: problems.append(str(err)))
        page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
        page.goto(url)
        page.wait_for_selector("#model:has-text('2 layers')")
        yield page
        browser.close()
    assert problems == []


@pytest.fixture
def page(run, serve):
    with opened(run, serve) as page:
        yield page


def test_the_playground_samples_shows_the_distribution_and_the_attention(page, run):
    ARTIFACTS.mkdir(exist_ok=True)
    expect = sync_api.expect
    prompt = "From fair"
    page.fill("#prompt", prompt)
    candidates = page.locator("#distribution .candidate")
    expect(candidates).to_have_count(12)
    expect(page.locator("#output .token")).to_have_count(len(prompt))
    expect(page.locator("#distribution .candidate.removed")).to_have_count(0)
    before = page.inner_text("#distribution")

    page.fill("#top-k", "3")  # the slider: only 3 tokens keep a chance
    expect(page.locator("#kept")).to_contain_text(f"3 of {run.tokenizer.vocab_size}")
    expect(page.locator("#distribution .candidate.removed")).to_have_count(12 - 3)
    assert page.inner_text("#distribution") != before
    page.screenshot(path=str(ARTIFACTS / "playground-distribution.png"), full_page=True)

    page.fill("#max-tokens", "20")
    page.fill("#seed", "4")
    page.click("#generate")
    generated = page.locator("#output .token.generated")
    expect(generated).to_have_count(20)
    expect(page.locator("#generate")).to_be_enabled()
    cfg = SampleConfig(max_new_tokens=20, temperature=0.8, top_k=3, seed=4)
    assert page.inner_text("#output").replace("↵", "") == prompt + generate(
        run.model, run.tokenizer, [prompt], cfg)[0]
    expect(page.locator("#finish")).to_have_text("reached max tokens")

    position = len(prompt) + 10
    page.click(f"#output .token[data-position='{position}']")
    cells = page.locator("#attention svg rect.cell")
    expect(cells).to_have_count(2 * 2 * (position + 1))  # layers x heads x (tokens up to it)
    expect(page.locator(f"#output .token.selected[data-position='{position}']")).to_have_count(1)
    drawn = cells.evaluate_all("cells => cells.map(c => [+c.dataset.layer, +c.dataset.head, "
                               "+c.dataset.key, +c.dataset.weight, c.getAttribute('fill')])")
    text = page.inner_text("#output").replace("↵", "")
    view = page.request.post(page.url + "v1/attention",
                             data={"text": text, "position": position}).json()
    assert [w for *_, w, _ in drawn] == [w for layer in view["layers"] for head in layer["heads"]
                                         for w in head]
    assert [(l, h, k) for l, h, k, *_ in drawn] == [
        (l, h, k) for l in range(2) for h in range(2) for k in range(position + 1)]
    fills = {fill for *_, fill in drawn}
    assert len(fills) > 1 and "rgb(255, 255, 255)" not in fills  # shades, none blank

    # beside it, the logit lens at that token: embed, layer 0, layer 1, each with its top 5
    rows = page.locator("#lens tr[data-layer]")
    expect(rows).to_have_count(3)
    lens = page.request.post(page.url + "v1/lens",
                             data={"text": text, "position": position, "top": 5}).json()
    shown = rows.evaluate_all("rows => rows.map(r => [r.dataset.layer, [...r.querySelectorAll("
                              "'td.guess')].map(c => [+c.dataset.id, +c.dataset.probability]), "
                              "[+r.querySelector('td.next').dataset.rank, "
                              "+r.querySelector('td.next').dataset.probability]])")
    assert shown == [[layer["layer"], [[t["id"], t["probability"]] for t in layer["top"]],
                      [layer["next_rank"], layer["next_probability"]]] for layer in lens["layers"]]
    expect(page.locator("#lens-caption")).to_contain_text(f"token {position}")
    page.screenshot(path=str(ARTIFACTS / "playground-attention.png"), full_page=True)


def test_generating_right_after_typing_is_not_cancelled_by_the_typing(page):
    # The prompt box refreshes the panels a moment after each keystroke; that refresh once also
    # stopped a generation started from the same prompt within that moment (Ctrl+Enter at once).
    page.fill("#max-tokens", "12")
    page.fill("#prompt", "Thy self")
    page.press("#prompt", "Control+Enter")
    page.wait_for_function("document.querySelector('#finish').textContent !== ''")
    assert page.inner_text("#finish") == "reached max tokens"  # not "stopped"
    page.wait_for_function("document.querySelectorAll('#output .token.generated').length > 0")
    assert page.locator("#output .token.generated").count() == 12


def test_the_playground_chats_with_an_instruct_model(chat_run, serve):
    """Chat mode: type a question, the streamed answer is the sampler's reply to the rendered
    conversation; a second turn keeps the first; a token of the answer shows its attention."""
    expect = sync_api.expect
    with opened(chat_run, serve) as page:
        expect(page.locator("#modes")).to_be_visible()
        page.check("input[name=mode][value=chat]")
        expect(page.locator("#generate")).to_have_text("Send")
        page.fill("#max-tokens", "30")
        page.fill("#seed", "5")
        turns = []
        for question in ("Hi?", "Who are you?"):
            page.fill("#prompt", question)
            page.click("#generate")
            expect(page.locator("#finish")).not_to_have_text("")
            expect(page.locator("#generate")).to_be_enabled()
            turns.append({"role": "user", "content": question})
            prompt = conversation(chat_run.tokenizer, turns)
            cfg = SampleConfig(max_new_tokens=30, temperature=0.8, seed=5, stop=("\n",))
            answer = generate(chat_run.model, chat_run.tokenizer, [prompt], cfg)[0]
            turns.append({"role": "assistant", "content": answer})
            shown = page.locator("#conversation .turn").all_inner_texts()
            assert shown == [t["content"] for t in turns]
            expect(page.locator("#output .token")).to_have_count(len(prompt + answer))
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "playground-chat.png"), full_page=True)
        position = len(prompt) + 3  # a token of the second answer
        page.click(f"#output .token[data-position='{position}']")
        expect(page.locator("#attention svg rect.cell")).to_have_count(2 * 2 * (position + 1))
