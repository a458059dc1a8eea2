"""The playground in a terminal. For an instruct checkpoint (its tokenizer has a chat template) a
conversation: each line is the user's turn, the reply streams in and is kept in the history;
/system TEXT sets the system message and /reset forgets the turns. For any other model, each line
is a prompt whose continuation streams in. /quit or end of input ends; Ctrl-C while a reply
streams stops it and asks for the next line."""

import dataclasses
from collections.abc import Iterable, Iterator
from typing import TextIO

from glassformer.errors import GlassformerError
from glassformer.generate.sampler import stream
from glassformer.tokenizers.chat_template import conversation, end_of_turn, has_chat_template

QUIT, RESET, SYSTEM = "/quit", "/reset", "/system"


def chat(model, tokenizer, prompts: Iterable[str], cfg, out: TextIO) -> None:
    """Answer each line of `prompts` (until /quit) on `out` as it is generated (cfg is a
    SampleConfig), then a newline: a conversation when the tokenizer has a chat template, else
    a continuation of each line. Empty lines are skipped; a line the model cannot read gets one
    error line, and the next line is read."""
    talk = Conversation(tokenizer, cfg) if has_chat_template(tokenizer) else None
    for line in prompts:
        if line.strip() == QUIT:
            return
        if not line:
            continue
        if talk is not None and talk.is_command(line.strip()):
            out.write(talk.command(line.strip()) + "\n")
            continue
        prompt, line_cfg = (line, cfg) if talk is None else (talk.prompt(line), talk.cfg)
        reply = []
        try:
            for piece in stream(model, tokenizer, prompt, line_cfg):
                reply.append(piece)
                out.write(piece)
                out.flush()
        except GlassformerError as err:
            out.write(f"error: {err}")
            reply = None
        except KeyboardInterrupt:
            out.write(" [stopped]")
        if talk is not None and reply is not None:
            talk.answered(line, "".join(reply))
        out.write("\n")


class Conversation:
    """The turns so far, and the system message, of a chat with an instruct model."""

    def __init__(self, tokenizer, cfg):
        self.tokenizer, self.system, self.turns = tokenizer, None, []
        end = end_of_turn(tokenizer)  # the reply stops where the template ends a turn
        self.cfg = dataclasses.replace(cfg, stop=cfg.stop + ((end,) if end else ()))

    def prompt(self, line: str) -> str:
        """The conversation with `line` as the user's next turn, the assistant's turn opened."""
        system = [{"role": "system", "content": self.system}] if self.system else []
        return conversation(self.tokenizer, system + self.turns + [
            {"role": "user", "content": line}])

    def answered(self, line: str, reply: str) -> None:
        self.turns += [{"role": "user", "content": line}, {"role": "assistant", "content": reply}]

    @staticmethod
    def is_command(line: str) -> bool:
        return line in (RESET, SYSTEM) or line.startswith(SYSTEM + " ")

    def command(self, line: str) -> str:
        """/reset or /system TEXT; what to tell the user."""
        if line == RESET:
            self.turns = []
            return "(the conversation is forgotten)"
        text = line.removeprefix(SYSTEM).strip()
        self.system, self.turns = text or None, []
        return "(system message set; the conversation starts again)" if text else \
            "(system message removed; the conversation starts again)"


def typed_prompts(marker: str = "> ") -> Iterator[str]:
    """Lines typed at the terminal, each after `marker`, until end of input (Ctrl-D)."""
    while True:
        try:
            yield input(marker)
        except EOFError:
            print()
            return
