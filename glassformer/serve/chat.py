"""The playground in a terminal: read a prompt, stream its continuation, again, until EOF or
/quit. Ctrl-C while a continuation streams stops it and asks for the next prompt."""

from collections.abc import Iterable, Iterator
from typing import TextIO

from glassformer.errors import GlassformerError
from glassformer.generate.sampler import stream

QUIT = "/quit"


def chat(model, tokenizer, prompts: Iterable[str], cfg, out: TextIO) -> None:
    """For each prompt (until one is /quit), write the prompt's continuation to `out` as it is
    generated (cfg is a SampleConfig), then a newline. Empty prompts are skipped; a prompt the
    model cannot read gets one error line, and the next prompt is read."""
    for prompt in prompts:
        if prompt.strip() == QUIT:
            return
        if not prompt:
            continue
        try:
            for piece in stream(model, tokenizer, prompt, cfg):
                out.write(piece)
                out.flush()
        except GlassformerError as err:
            out.write(f"error: {err}")
        except KeyboardInterrupt:
            out.write(" [stopped]")
        out.write("\n")


def typed_prompts(marker: str = "> ") -> Iterator[str]:
    """Lines typed at the terminal, each after `marker`, until end of input (Ctrl-D)."""
    while True:
        try:
            yield input(marker)
        except EOFError:
            print()
            return
