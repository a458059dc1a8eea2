"""What a run learns: the data, batches and metrics of each `train.task`, so that one training
loop serves every family. A task builds its tokenizer (unless given the run's own), draws
training batches (the keyword arguments of its model's forward), and evaluates.

  lm      gpt     next token of the text                  metric: loss
  mlm     bert    masked tokens of the text               + masked-token accuracy
  genre   bert    genre of a Shakespeare passage          + accuracy on held-out works
  tsv     bert    label of a text, text<TAB>label files   + accuracy on the held-out file
  pairs   encdec  target string from source string        + exact match on held-out pairs
  chat    gpt     assistant turns of conversations (SFT)   loss on the assistant's tokens only

`evaluate` and `show` leave the model in eval mode; the loop switches it back to training.
"""

from __future__ import annotations

import numpy as np
import torch

from glassformer.config import SampleConfig
from glassformer.data import chat, genre, labelled, mlm, seq2seq
from glassformer.data.corpora import load_text, shakespeare_works
from glassformer.data.lm import check_enough, get_batch, split, token_file
from glassformer.data.shards import PreparedData
from glassformer.errors import GlassformerError
from glassformer.generate.beam import translate
from glassformer.generate.sampler import generate
from glassformer.tokenizers import CharTokenizer, build_tokenizer, special
from glassformer.tokenizers.chat_template import conversation, end_of_turn, has_chat_template


@torch.no_grad()
def mean_over(model, batches: list[dict], metric=None,
              weight=lambda batch: len(batch["ids"])) -> tuple[float, float | None]:
    """Mean loss (and mean `metric(logits, batch)`) over batches, each weighted by
    `weight(batch)` (default: its rows), in eval mode."""
    model.eval()
    rows = [weight(batch) for batch in batches]
    losses, scores = [], []
    for batch in batches:
        logits, loss = model(**batch)
        losses.append(loss.item())
        if metric is not None:
            scores.append(metric(logits, batch))

    def mean(values):
        return sum(v * n for v, n in zip(values, rows)) / sum(rows)
    return mean(losses), (mean(scores) if scores else None)


def fixed_batches(draw, n: int, seed: int) -> list[dict]:
    """`n` batches from draw(generator), the same every call: evaluation compares like with like."""
    generator = torch.Generator().manual_seed(seed)
    return [draw(generator) for _ in range(n)]


def val_scope(tc) -> str:
    """What a run's val_loss during training was measured on: `eval_batches` random batches of
    the held-out split, or all of it (`glassformer eval` always scores all of it)."""
    return "whole split" if TASKS[tc.task].WHOLE_VAL else f"{tc.eval_batches} batches"


class LMTask:
    """Next-token prediction on a text (the default corpus or --text), last 10% held out, or on
    a prepared dataset (--data: its shards and its split, read in place)."""

    WHOLE_VAL = False  # val_loss: eval_batches random batches (scoring every token is `eval`)
    METRIC = None  # the task's main held-out metric beside the loss

    def __init__(self, cfg, tokenizer=None):
        tc, self.block_size = cfg.train, cfg.model.block_size
        self.tc = tc
        if tc.data:
            data = PreparedData(tc.data)
            self.tokenizer = same_tokenizer(tokenizer, data.tokenizer, tc.data)
            self.train, self.val = data.train, data.val
            self.prompt = self.tokenizer.decode(self.val[:1])  # samples start as val does
        else:
            text = load_text(tc.text)
            self.tokenizer = tokenizer or self.new_tokenizer(text)
            self.train, self.val = split(token_file(text, self.tokenizer), tc.val_fraction)
            self.prompt = "\n" if "\n" in text else text[0]  # samples start at a line break
        check_enough(self.train, self.block_size, "training")
        check_enough(self.val, self.block_size, "validation")

    def new_tokenizer(self, text):
        return build_tokenizer(self.tc.tokenizer, text, self.tc.bpe_vocab_size)

    def describe(self) -> str:
        return f"{len(self.train):,} train / {len(self.val):,} val tokens"

    def batch(self, generator, device) -> dict:
        x, y = get_batch(self.train, self.tc.batch_size, self.block_size, generator, device)
        return {"ids": x, "targets": y}

    def evaluate(self, model, device) -> dict:
        out = {}
        for name, tokens in (("train_loss", self.train), ("val_loss", self.val)):
            def draw(g, tokens=tokens):
                x, y = get_batch(tokens, self.tc.batch_size, self.block_size, g, device)
                return {"ids": x, "targets": y}
            out[name] = mean_over(model, fixed_batches(draw, self.tc.eval_batches, self.tc.seed))[0]
        return out

    def show(self, model) -> str:
        if model.cfg.family != "gpt":
            return ""  # the sampler decodes with a KV cache, which only the GPT has
        cfg = SampleConfig(max_new_tokens=self.tc.sample_tokens, temperature=0.8, seed=self.tc.seed)
        return generate(model, self.tokenizer, [self.prompt], cfg)[0].strip("\n")


def same_tokenizer(given, prepared, folder):
    """The prepared dataset's tokenizer, refused when the run already has another (a resumed
    run's, or init_from's): the dataset's ids would mean other tokens to the model."""
    if given is not None and given.to_json() != prepared.to_json():
        raise GlassformerError(f"the dataset {folder} was prepared with another tokenizer than "
                               "this run's; prepare it with the run's (--tokenizer RUN)")
    return prepared


def masked_accuracy(logits, batch) -> float:
    """Share of the masked positions whose original token is the top prediction."""
    chosen = batch["targets"] != -1
    return (logits.argmax(-1)[chosen] == batch["targets"][chosen]).float().mean().item()


class MLMTask(LMTask):
    """Masked-token prediction on the text (BERT pretraining); the same split as `lm`."""

    METRIC = "val_masked_accuracy"
    SHOWN = 72  # characters of the validation text shown with every 6th one masked

    def __init__(self, cfg, tokenizer=None):
        if cfg.model.n_classes == 0 and cfg.model.head != "mlm":
            raise GlassformerError(f"a plain encoder (model.head={cfg.model.head!r}) has no "
                                   "masked-LM head to train; fine-tune it as a classifier "
                                   "(--task genre)")
        if tokenizer is not None and not isinstance(tokenizer, CharTokenizer):
            raise GlassformerError("masked-LM training masks with glassformer's own special ids "
                                   f"({', '.join(special.ENCODER)} = 0..3, a char tokenizer's); "
                                   f"this run's {type(tokenizer).__name__} numbers them otherwise")
        super().__init__(cfg, tokenizer)

    def new_tokenizer(self, text):
        return CharTokenizer.from_text(text, special.ENCODER)

    def draw(self, tokens, generator, device) -> dict:
        return mlm.mlm_batch(tokens, self.tc.batch_size, self.block_size,
                             self.tokenizer.vocab_size, generator, device)

    def batch(self, generator, device) -> dict:
        return self.draw(self.train, generator, device)

    def evaluate(self, model, device) -> dict:
        out = {}
        for name, tokens in (("train", self.train), ("val", self.val)):
            batches = fixed_batches(lambda g: self.draw(tokens, g, device), self.tc.eval_batches,
                                    self.tc.seed)
            out[f"{name}_loss"], out[f"{name}_masked_accuracy"] = mean_over(
                model, batches, masked_accuracy)
        return out

    @torch.no_grad()
    def show(self, model) -> str:
        """A validation passage with every 6th character hidden, and the model's guesses."""
        n = min(self.SHOWN, self.block_size - 2)
        ids = mlm.wrap(torch.from_numpy(np.asarray(self.val[:n], dtype=np.int64))[None])  # (1, T)
        hidden = torch.arange(1, n + 1, 6)  # positions of hidden characters
        masked = ids.clone()
        masked[0, hidden] = special.MASK
        model.eval()
        guess = model(masked.to(next(model.parameters()).device))[0][0].argmax(-1).cpu()  # (T,)
        filled = ids[0].clone()
        filled[hidden] = guess[hidden]
        shown = [self.tokenizer.decode([i]) for i in ids[0, 1:-1]]
        for h in hidden.tolist():
            shown[h - 1] = "_"
        one_line = str.maketrans("\n", " ")
        return ("masked: " + "".join(shown).translate(one_line) + "\n"
                "filled: " + self.tokenizer.decode(filled[1:-1]).translate(one_line))


def class_accuracy(logits, batch) -> float:
    return (logits.argmax(-1) == batch["targets"]).float().mean().item()


def classifier_metrics(model, train: list[dict], test: list[dict], test_labels) -> dict:
    """Loss and accuracy over training batches and over the whole held-out set (its batches
    `test`, its labels `test_labels` (N,)), and the held-out accuracy of always answering its
    most common label."""
    train_loss, train_acc = mean_over(model, train, class_accuracy)
    val_loss, val_acc = mean_over(model, test, class_accuracy)
    return {"train_loss": train_loss, "train_accuracy": train_acc, "val_loss": val_loss,
            "val_accuracy": val_acc,
            "majority_baseline": np.bincount(test_labels.numpy()).max() / len(test_labels)}


class GenreTask:
    """Genre of a passage (comedy / tragedy / history / poem), whole works held out."""

    WHOLE_VAL, METRIC = True, "val_accuracy"

    def __init__(self, cfg, tokenizer=None):
        if cfg.model.n_classes != len(genre.GENRES):
            raise GlassformerError(f"the genre task has {len(genre.GENRES)} classes; set "
                                   f"--model.n_classes={len(genre.GENRES)}")
        if cfg.train.text is not None:
            raise GlassformerError("the genre task reads Shakespeare's works one by one; "
                                   "drop --text")
        works = shakespeare_works()
        self.tokenizer = tokenizer or CharTokenizer.from_text("".join(works.values()),
                                                              special.ENCODER)
        self.data = genre.GenreData(works, self.tokenizer, cfg.model.block_size)
        self.test_ids, self.test_labels = self.data.test_set()  # (N, T), (N,)
        self.tc = cfg.train

    def describe(self) -> str:
        counts = np.bincount(self.test_labels.numpy(), minlength=len(genre.GENRES))
        return (f"{len(genre.WORKS) - len(genre.HELD_OUT)} training works / "
                f"{len(self.test_labels):,} held-out passages ("
                + ", ".join(f"{n} {g}" for g, n in zip(genre.GENRES, counts)) + ")")

    def batch(self, generator, device) -> dict:
        return self.data.batch(self.tc.batch_size, generator, device)

    def evaluate(self, model, device) -> dict:
        batches = fixed_batches(lambda g: self.batch(g, device), self.tc.eval_batches, self.tc.seed)
        B = self.tc.batch_size
        test = [{"ids": self.test_ids[i:i + B].to(device),
                 "targets": self.test_labels[i:i + B].to(device)}
                for i in range(0, len(self.test_labels), B)]
        return classifier_metrics(model, batches, test, self.test_labels)

    def show(self, model) -> str:
        return ""


class TsvTask:
    """The label of a text, from text<TAB>label files (train.train_tsv; held out:
    train.val_tsv), in the run's tokenizer (data/labelled.py); the labels are the model's."""

    WHOLE_VAL, METRIC = True, "val_accuracy"

    def __init__(self, cfg, tokenizer=None):
        tc = cfg.train
        if tokenizer is None:
            raise GlassformerError("the tsv task reads texts with a trained encoder's tokenizer; "
                                   "fine-tune one: glassformer finetune RUN --task tsv "
                                   "--train-tsv FILE --val-tsv FILE")
        self.data = labelled.LabelledData(tc.train_tsv, tc.val_tsv, tokenizer,
                                          cfg.model.block_size)
        if cfg.model.labels != self.data.labels:
            raise GlassformerError(f"the run's classifier answers {list(cfg.model.labels)} but "
                                   f"{tc.train_tsv} has the labels {list(self.data.labels)}; "
                                   "fine-tune a new run on it")
        self.tokenizer, self.tc = tokenizer, tc

    def describe(self) -> str:
        counts = np.bincount(self.data.val_labels.numpy(), minlength=len(self.data.labels))
        return (f"{len(self.data.train):,} training texts / {len(self.data.val):,} held-out ("
                + ", ".join(f"{n} {name}" for name, n in zip(self.data.labels, counts)) + ")")

    def batch(self, generator, device) -> dict:
        return self.data.batch(self.tc.batch_size, generator, device)

    def evaluate(self, model, device) -> dict:
        batches = fixed_batches(lambda g: self.batch(g, device), self.tc.eval_batches, self.tc.seed)
        return classifier_metrics(model, batches, self.data.val_batches(self.tc.batch_size, device),
                                  self.data.val_labels)

    def show(self, model) -> str:
        return ""


class PairsTask:
    """Source -> target strings: numbers to words (generated) or a TSV file (--pairs)."""

    EXAMPLES = 4  # held-out pairs decoded at each evaluation
    WHOLE_VAL, METRIC = True, "val_exact_match"

    def __init__(self, cfg, tokenizer=None):
        tc = cfg.train
        self.pairs = (seq2seq.FilePairs(tc.pairs, tc.val_fraction, tc.seed) if tc.pairs
                      else seq2seq.NumberPairs())
        self.tokenizer = tokenizer or CharTokenizer.from_text(self.pairs.text(), special.SEQ2SEQ)
        self.test = self.pairs.test()
        self.tc, self.block_size = tc, cfg.model.block_size
        seq2seq.pairs_batch(self.test, self.tokenizer, self.block_size)  # fails early if too long

    def describe(self) -> str:
        return f"{len(self.test):,} held-out pairs" + (f" from {self.tc.pairs}" if self.tc.pairs
                                                       else " (numbers to words)")

    def batch(self, generator, device) -> dict:
        pairs = self.pairs.sample(self.tc.batch_size, generator)
        return seq2seq.pairs_batch(pairs, self.tokenizer, self.block_size, device)

    def evaluate(self, model, device) -> dict:
        batches = fixed_batches(lambda g: self.batch(g, device), self.tc.eval_batches, self.tc.seed)
        B = self.tc.batch_size
        test = [seq2seq.pairs_batch(self.test[i:i + B], self.tokenizer, self.block_size, device)
                for i in range(0, len(self.test), B)]
        return {"train_loss": mean_over(model, batches)[0], "val_loss": mean_over(model, test)[0],
                "val_exact_match": self.exact_match(model)}

    def exact_match(self, model) -> float:
        """Share of held-out sources whose greedy translation equals the target exactly."""
        got = translate(model, self.tokenizer, [s for s, _ in self.test])
        return sum(g == t for g, (_, t) in zip(got, self.test)) / len(self.test)

    def show(self, model) -> str:
        sources = [s for s, _ in self.test[:self.EXAMPLES]]
        got = translate(model, self.tokenizer, sources)
        return "\n".join(f"{s} -> {g}" for s, g in zip(sources, got))


class ChatTask:
    """Supervised fine-tuning of an instruct model: the assistant's turns of the conversations
    in a JSONL file (data/chat.py), the loss on the assistant's tokens only; held out: the
    val_conversations file, or the file's last val_fraction."""

    WHOLE_VAL, METRIC = True, None

    def __init__(self, cfg, tokenizer=None):
        tc = self.tc = cfg.train
        self.block_size = cfg.model.block_size
        if not has_chat_template(tokenizer):
            raise GlassformerError("the chat task fine-tunes an instruct model, whose tokenizer "
                                   "has a chat template; start from one, e.g. `glassformer pull "
                                   "smollm2-135m-instruct`, then `glassformer finetune "
                                   "runs/smollm2-135m-instruct --conversations FILE`")
        self.tokenizer = tokenizer
        examples = chat.load_examples(tc.conversations, tokenizer, self.block_size)
        if tc.val_conversations:
            self.train = examples
            self.val = chat.load_examples(tc.val_conversations, tokenizer, self.block_size)
        else:
            if len(examples) < 2:
                raise GlassformerError(f"{tc.conversations} holds one conversation: too few to "
                                       "hold some out; add more, or give --val-conversations")
            cut = len(examples) - max(1, round(len(examples) * tc.val_fraction))
            self.train, self.val = examples[:cut], examples[cut:]
        # the longest row a batch can hold, for the memory check
        self.row_tokens = max(len(e.ids) for e in self.train) - 1

    def describe(self) -> str:
        cut = sum(e.truncated for e in self.train + self.val)
        learnt = sum(sum(e.learnt[1:]) for e in self.train)
        return (f"{len(self.train):,} train / {len(self.val):,} held-out conversations, "
                f"{learnt:,} assistant tokens to learn"
                + (f"; {cut} cut to the window of {self.block_size} tokens" if cut else ""))

    def rows(self, examples, device) -> dict:
        return chat.chat_batch(examples, self.tokenizer.pad_id, device)

    def batch(self, generator, device) -> dict:
        picked = torch.randint(len(self.train), (self.tc.batch_size,), generator=generator)
        return self.rows([self.train[i] for i in picked.tolist()], device)

    @torch.no_grad()
    def evaluate(self, model, device) -> dict:
        batches = fixed_batches(lambda g: self.batch(g, device), self.tc.eval_batches, self.tc.seed)
        out = {}
        for name, chunks in (("train_loss", batches), ("val_loss", [
                self.rows(self.val[i:i + self.tc.batch_size], device)
                for i in range(0, len(self.val), self.tc.batch_size)])):
            out[name] = mean_over(model, chunks, weight=counted_targets)[0]
        return out

    def show(self, model) -> str:
        """The greedy reply to the first held-out conversation, beside the one it was taught."""
        asked, taught = chat.prompt_and_reply(self.val[0].messages)
        end = end_of_turn(self.tokenizer)
        cfg = SampleConfig(max_new_tokens=self.tc.sample_tokens, temperature=0.0,
                           stop=(end,) if end else ())
        reply = generate(model, self.tokenizer, [conversation(self.tokenizer, asked)], cfg)[0]
        return f"asked:  {asked[-1]['content']}\nreply:  {reply}\ntaught: {taught}"


def counted_targets(batch: dict) -> int:
    """The targets of a batch that the loss counts (the assistant's tokens of a chat batch)."""
    return (batch["targets"] != chat.IGNORE).sum().item()


TASKS = {"lm": LMTask, "mlm": MLMTask, "genre": GenreTask, "tsv": TsvTask, "pairs": PairsTask,
         "chat": ChatTask}
