"""`glassformer serve RUN`: the playground, a local web page and an OpenAI-style API.

  glassformer serve RUN [--host H] [--port P] [--max-prompt-chars N] [--max-tokens N]
                        [--max-concurrent N] [--quantize int8|bf16]
"""

from __future__ import annotations

import sys

from glassformer.cli.options import RUN_HELP, add_quantize_option
from glassformer.errors import ConfigError
from glassformer.serve.limits import Limits


def add_commands(sub) -> None:
    p = sub.add_parser("serve", help="the playground: a local web page to sample, watch the "
                                     "next-token distribution and attention; an OpenAI-style API")
    p.add_argument("run_dir", metavar="RUN", help=RUN_HELP)
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default: %(default)s, this machine only)")
    p.add_argument("--port", type=int, default=8000, help="(default: %(default)s)")
    limits = Limits()
    p.add_argument("--max-prompt-chars", type=int, default=limits.max_prompt_chars,
                   help="longest prompt or inspected text, in characters (default: %(default)s)")
    p.add_argument("--max-tokens", type=int, default=limits.max_tokens,
                   help="most tokens one completion may ask for (default: %(default)s)")
    p.add_argument("--max-concurrent", type=int, default=limits.max_concurrent,
                   help="completions generating at once; more get 429 (default: %(default)s)")
    add_quantize_option(p)
    p.set_defaults(run=cmd_serve)


def cmd_serve(args) -> int:
    from glassformer.serve.api import serve

    if not 0 < args.port < 65536:
        raise ConfigError(f"--port must be in 1..65535, got {args.port}")
    limits = Limits(max_prompt_chars=args.max_prompt_chars, max_tokens=args.max_tokens,
                    max_concurrent=args.max_concurrent)
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"warning: listening on {args.host}: anyone who can reach this machine can use "
              "the playground and its API", file=sys.stderr)
    serve(args.run_dir, args.host, args.port, limits, args.quantize)
    return 0
