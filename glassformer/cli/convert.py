"""`glassformer convert SRC DST`: a Hugging Face checkpoint directory to a run directory, or back."""

from __future__ import annotations


def add_commands(sub) -> None:
    p = sub.add_parser("convert", help="Hugging Face checkpoint <-> glassformer run directory",
                       description="Convert a Hugging Face checkpoint directory (config.json with "
                                   "a model_type, model.safetensors or pytorch_model.bin, "
                                   "tokenizer.json) or a GGUF file of the Llama family (or a "
                                   "directory holding one) into a run directory, or a run "
                                   "directory into a Hugging Face one; the direction is read "
                                   "from SRC.")
    p.add_argument("src", metavar="SRC",
                   help="a Hugging Face directory, a .gguf file, or a run directory")
    p.add_argument("dst", metavar="DST", help="a new (or empty) directory to write")
    p.set_defaults(run=cmd_convert)


def cmd_convert(args) -> int:
    from glassformer.interop.hf import convert

    print(convert(args.src, args.dst))
    return 0
