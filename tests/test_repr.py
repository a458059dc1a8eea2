"""What a notebook cell shows for the objects a learner touches: configs name only what differs
from the defaults (and evaluate back to an equal config), tokenizers their kind and vocabulary,
a loaded run its step, size and settings instead of a page of module tree."""

from glassformer.config import ModelConfig, RunConfig, SampleConfig, TrainConfig, preset
from glassformer.tokenizers import CharTokenizer
from glassformer.tokenizers.bpe import HFTokenizer
from glassformer.train.checkpoint import Run


def test_a_config_shows_only_its_changed_fields_and_evaluates_back():
    cfg = ModelConfig(n_layer=4, position="rope", n_kv_head=2)
    assert repr(cfg) == "ModelConfig(n_layer=4, n_kv_head=2, position='rope')"
    assert repr(ModelConfig()) == "ModelConfig()"
    assert repr(SampleConfig(stop=("\n",), top_k=40)) == r"SampleConfig(top_k=40, stop=('\n',))"
    for config in (cfg, TrainConfig(lr=3e-4, lora_targets=("q",)), preset("shakespeare-char")):
        assert eval(repr(config)) == config
    run = preset("tiny")
    assert repr(run).startswith("RunConfig(model=ModelConfig(block_size=32, n_layer=2, ")
    assert repr(RunConfig()) == "RunConfig()"


def test_tokenizers_show_their_kind_and_vocabulary():
    char = CharTokenizer.from_text("hello world\n", specials=["[PAD]"])
    assert repr(char) == "CharTokenizer(vocab_size=10, chars='\\n dehlorw', specials=['[PAD]'])"
    long = CharTokenizer([chr(i) for i in range(65, 65 + 50)])
    assert repr(long) == f"CharTokenizer(vocab_size=50, chars={''.join(long.chars[:40]) + '...'!r})"
    bpe = HFTokenizer.train_bpe("the cat sat on the mat. " * 50, 300)
    assert repr(bpe) == f"HFTokenizer(BPE, vocab_size={bpe.vocab_size})"
    assert repr(HFTokenizer.from_chars(["a", "b"])) == "HFTokenizer(WordLevel, vocab_size=2)"


def test_a_loaded_run_shows_its_step_size_and_config_not_its_module_tree():
    import torch

    cfg = preset("tiny")
    model = torch.nn.Linear(3, 2)  # 8 parameters
    text = repr(Run(cfg, CharTokenizer.from_text("ab"), model, 20))
    assert text == ("Run(step=20,\n    model=Linear (8 parameters),\n"
                    "    tokenizer=CharTokenizer(vocab_size=2, chars='ab'),\n"
                    f"    cfg={cfg!r})")
