"""`glassformer finetune ...`: fine-tune a run in full or with LoRA, or compare the two.

  glassformer finetune RUN [--task T] [--text PATH | --work NAME | --conversations JSONL
                           [--val-conversations JSONL]] [--method full|lora|scratch]
                           [--rank R] [--out DIR] [--max-steps N]
                           [--compare [--ranks 4,8,16] [--scratch]] [--train.F=V]
  glassformer finetune RUN --task tsv --train-tsv FILE --val-tsv FILE ...   (text<TAB>label)
"""

from __future__ import annotations

from pathlib import Path

from glassformer.errors import ConfigError


def add_commands(sub) -> None:
    p = sub.add_parser(
        "finetune", help="fine-tune a run on new text or a new task: in full or with LoRA",
        epilog="Any train field can be set with a dotted key, e.g. --train.lr=1e-3 "
               "--train.lora_targets=q,k,v,o.")
    p.add_argument("run_dir", metavar="RUN", help="the trained run to start from")
    p.add_argument("--task", help="lm (a gpt run on new text), genre (a bert MLM run as a "
                                  "genre classifier), tsv (a bert run as a classifier of "
                                  "--train-tsv's labels), chat (an instruct model on "
                                  "conversations), ...; default: tsv with --train-tsv, chat "
                                  "with --conversations, else the run's own")
    what = p.add_mutually_exclusive_group()
    what.add_argument("--text", help="UTF-8 text file to fine-tune on")
    what.add_argument("--work", help="one of Shakespeare's works by name, e.g. sonnets")
    what.add_argument("--conversations", metavar="JSONL",
                      help="conversations to learn the assistant's replies from (task chat), "
                           'one {"messages": [...]} per line as OpenAI writes them')
    p.add_argument("--val-conversations", metavar="JSONL",
                   help="held-out conversations (default: the last 10%% of --conversations)")
    p.add_argument("--train-tsv", help="task tsv: UTF-8 file of text<TAB>label lines to train on")
    p.add_argument("--val-tsv", help="task tsv: held-out text<TAB>label lines, scored for "
                                     "val_loss and val_accuracy")
    p.add_argument("--method", choices=("full", "lora", "scratch"), default="lora",
                   help="train every weight, or low-rank adapters, or the same model from "
                        "random weights with the run's tokenizer (default: lora)")
    p.add_argument("--rank", type=int, default=8, help="LoRA rank (default: %(default)s)")
    p.add_argument("--out", help="run directory (default: RUN-METHOD, or RUN-compare)")
    p.add_argument("--max-steps", type=int, help="optimizer steps (default: 200)")
    p.add_argument("--compare", action="store_true",
                   help="fine-tune in full and with LoRA of each --ranks on the same budget and "
                        "seed; write OUT/report.md")
    p.add_argument("--ranks", default="4,8,16", help="LoRA ranks of --compare (default: 4,8,16)")
    p.add_argument("--scratch", action="store_true",
                   help="--compare: also train the same model from random weights (the baseline)")
    p.set_defaults(run=cmd_finetune)


def cmd_finetune(args) -> int:
    from glassformer.finetune.compare import compare_methods
    from glassformer.finetune.run import finetune, work_file

    text = work_file(args.work) if args.work else args.text
    if (args.train_tsv is None) != (args.val_tsv is None):
        raise ConfigError("--train-tsv and --val-tsv go together: a file to train on and one "
                          "held out")
    tsv = (args.train_tsv, args.val_tsv) if args.train_tsv else None
    task = args.task or ("tsv" if tsv else None)
    overrides = ({"train.max_steps": str(args.max_steps)} if args.max_steps else {}) \
        | args.overrides
    if args.compare:
        try:
            ranks = [int(r) for r in args.ranks.split(",")]
        except ValueError:
            raise ConfigError(f"--ranks must be integers separated by commas, got {args.ranks!r}") \
                from None
        out = Path(args.out or f"{args.run_dir.rstrip('/')}-compare")
        path = compare_methods(args.run_dir, out, task=task, text=text, tsv=tsv,
                               ranks=ranks, scratch=args.scratch, overrides=overrides,
                               conversations=args.conversations,
                               val_conversations=args.val_conversations)
        print(path.read_text(encoding="utf-8"))
        return 0
    out = args.out or f"{args.run_dir.rstrip('/')}-{args.method}"
    finetune(args.run_dir, out, args.method, task=task, text=text, tsv=tsv, rank=args.rank,
             overrides=overrides, conversations=args.conversations,
             val_conversations=args.val_conversations)
    return 0
