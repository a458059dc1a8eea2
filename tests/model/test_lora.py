"""LoRA adapters (model/lora.py): zero adapters leave the model as it was, merging changes
nothing, only adapters train, q/k/v adapters touch their own rows of the fused qkv, the numbers
equal peft's on the same weights, and the adapter file is small and round-trips."""

import copy

import pytest
import torch

from glassformer.config import ModelConfig
from glassformer.errors import GlassformerError
from glassformer.model import lora
from glassformer.model.bert import BERT
from tests.helpers import lively_gpt

# Grouped-query (q rows 32, k and v rows 16 each) and gated (the feed-forward has `up`).
CFG = ModelConfig(vocab_size=40, block_size=16, n_layer=2, n_head=4, n_kv_head=2, n_embd=32,
                  activation="swiglu")
ALL = ("q", "k", "v", "o", "fc", "up", "proj")
IDS = torch.randint(0, 40, (2, 12), generator=torch.Generator().manual_seed(0))  # (B, T)


def adapted(targets=ALL, rank=4, alpha=8.0, cfg=CFG):
    """A base GPT and a copy with adapters whose B is random (so that they do something)."""
    base = lively_gpt(cfg)
    model = copy.deepcopy(base)
    lora.add_adapters(model, rank, alpha, 0.0, targets)
    torch.manual_seed(1)
    for name, p in model.named_parameters():
        if name.endswith(".B"):
            torch.nn.init.normal_(p, std=0.2)
    return base, model.eval()


def test_zero_initialised_adapters_leave_the_output_unchanged():
    base = lively_gpt(CFG)
    model = copy.deepcopy(base)
    lora.add_adapters(model, 4, 8.0, 0.0, ALL)
    # per block: qkv (q, k, v adapters), the attention output, fc, up and the FFN proj
    assert sum(isinstance(m, lora.LoRALinear) for m in model.modules()) == 2 * 5
    torch.testing.assert_close(model.eval()(IDS)[0], base(IDS)[0], atol=0, rtol=0)


def test_merged_weights_give_the_logits_of_the_adapters():
    _, model = adapted()
    before = model(IDS)[0]
    lora.merge(model)
    assert not any(isinstance(m, lora.LoRALinear) for m in model.modules())
    torch.testing.assert_close(model(IDS)[0], before, atol=1e-5, rtol=0)
    assert all(p.requires_grad for p in model.parameters())  # a plain model again


@pytest.mark.parametrize("target, rows", [("q", (0, 32)), ("k", (32, 48)), ("v", (48, 64))])
def test_q_k_v_adapters_change_only_their_rows_of_the_fused_projection(target, rows):
    base, model = adapted(targets=(target,))
    lora.merge(model)
    changed = (model.blocks[0].attn.qkv.weight != base.blocks[0].attn.qkv.weight).any(dim=1)
    assert changed.nonzero().squeeze(1).tolist() == list(range(*rows))


def test_only_adapter_parameters_get_gradients():
    base, model = adapted(targets=("q", "v", "fc"))
    model.train()
    model(IDS, IDS)[1].backward()
    for name, p in model.named_parameters():
        is_adapter = ".adapters." in name
        assert p.requires_grad == is_adapter, name
        assert (p.grad is not None and p.grad.abs().sum() > 0) == is_adapter, name
    assert {n for n, _ in model.named_parameters() if ".adapters." in n} == {
        f"blocks.{i}.{part}.adapters.{t}.{m}" for i in range(2) for m in "AB"
        for part, t in (("attn.qkv", "q"), ("attn.qkv", "v"), ("mlp.fc", "fc"))}


def test_a_classifier_head_trains_with_the_adapters():
    model = BERT(ModelConfig(family="bert", vocab_size=40, block_size=16, n_layer=1, n_head=2,
                             n_embd=16, n_classes=4))
    lora.add_adapters(model, 2, 4.0, 0.0, ("q", "v"))
    trained = {n.split(".")[0] for n in lora.trained_weights(model)}
    assert trained == {"blocks", "classifier"}
    assert all(".adapters." in n for n in lora.trained_weights(model) if n.startswith("blocks"))


def test_equals_peft_on_the_same_weights():
    """Where peft can adapt our layers (whole nn.Linear modules: the fused qkv, the attention
    output, the feed-forward), the same A and B give the same logits. peft has one adapter for
    the whole qkv; ours are one per q, k, v row block: sharing A and splitting B by rows makes
    them the same update."""
    peft = pytest.importorskip("peft")
    base = lively_gpt(CFG).double()
    ours = copy.deepcopy(base)
    lora.add_adapters(ours, 4, 8.0, 0.0, ("q", "k", "v", "o", "fc", "proj"))
    theirs = peft.inject_adapter_in_model(
        peft.LoraConfig(r=4, lora_alpha=8.0, lora_dropout=0.0, init_lora_weights=False,
                        target_modules=r".*\.(attn\.qkv|attn\.proj|mlp\.fc|mlp\.proj)"),
        copy.deepcopy(base))
    with torch.no_grad():
        for name, module in theirs.named_modules():
            if not hasattr(module, "lora_A"):
                continue
            A = module.lora_A["default"].weight  # (r, in)
            B = module.lora_B["default"].weight  # (out, r)
            B.normal_(std=0.2)
            assert module.scaling["default"] == 8.0 / 4
            for adapter in ours.get_submodule(name).adapters.values():
                adapter.A.copy_(A)
                adapter.B.copy_(B[adapter.start:adapter.stop])
    ids = IDS
    torch.testing.assert_close(ours.eval()(ids)[0], theirs.eval()(ids)[0], atol=1e-6, rtol=0)
    assert (ours(ids)[0] - base(ids)[0]).abs().max() > 1e-2  # the adapters do something


def test_the_adapter_file_is_small_and_round_trips(tmp_path):
    base, model = adapted(targets=("q", "v"), rank=2)
    lora.save_adapters(model, tmp_path / "adapters.safetensors", step=7)
    torch.save(base.state_dict(), tmp_path / "base.pt")
    size = (tmp_path / "adapters.safetensors").stat().st_size
    assert size < (tmp_path / "base.pt").stat().st_size / 5

    again = copy.deepcopy(base)
    lora.add_adapters(again, 2, 8.0, 0.0, ("q", "v"))  # fresh (zero) adapters on the base
    assert lora.load_adapters(again, tmp_path / "adapters.safetensors") == 7
    torch.testing.assert_close(again.eval()(IDS)[0], model(IDS)[0], atol=0, rtol=0)

    other = copy.deepcopy(base)
    lora.add_adapters(other, 4, 8.0, 0.0, ("q", "v"))
    with pytest.raises(GlassformerError, match="same lora_rank and lora_targets"):
        lora.load_adapters(other, tmp_path / "adapters.safetensors")


def test_unknown_targets_are_named():
    with pytest.raises(GlassformerError, match=r"unknown LoRA targets \['qq'\]"):
        lora.add_adapters(lively_gpt(CFG), 4, 8.0, 0.0, ("qq",))
