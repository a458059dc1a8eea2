"""T5 against Hugging Face models built from small configs with random weights (seeded), v1.0
(ReLU, head tied to the shared embedding and scaled by d_model^-0.5) and v1.1 (tanh-gated GELU,
its own head, no scaling): encoder states, decoder logits with padding in the source, greedy
generation, export both ways, the encoder's token vectors read from a checkpoint directory, the
T5-small parameter count, and a SentencePiece-style Unigram tokenizer.json."""

import json

import pytest
import torch
from hf_pairs import TEXT
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from torch import nn
from transformers import (AutoModelForSeq2SeqLM, PreTrainedTokenizerFast, T5Config,
                          T5EncoderModel, T5ForConditionalGeneration, T5Model)

import glassformer
from glassformer.cli import main
from glassformer.config import ModelConfig, RunConfig
from glassformer.errors import ConfigError
from glassformer.generate.beam import greedy
from glassformer.interop import t5
from glassformer.interop.hf import exported
from glassformer.interop.keymap import UnsupportedCheckpoint
from glassformer.model import EncoderDecoder, build, count_parameters
from glassformer.tokenizers import HFTokenizer, load_tokenizer
from glassformer.train.checkpoint import load_run

V = 64
SMALL = dict(vocab_size=V, d_model=32, d_kv=8, d_ff=48, num_layers=3, num_heads=4,
             relative_attention_num_buckets=8, relative_attention_max_distance=20,
             decoder_start_token_id=0)
VERSIONS = {"v1.0": dict(feed_forward_proj="relu"),
            "v1.1": dict(feed_forward_proj="gated-gelu", tie_word_embeddings=False)}
START, END = 0, 1  # T5's decoder start (its pad id) and </s>
TOL = 1e-5


def hf_t5(version, cls=T5ForConditionalGeneration, seed=0, **config):
    """A T5 of `version` with transformers' own random init (sized for unscaled scores), its
    norm gains moved off 1 so that a swapped norm shows."""
    torch.manual_seed(seed)
    hf = cls(T5Config(**SMALL | VERSIONS[version] | config))
    if version == "v1.1" and hasattr(hf, "lm_head"):
        # transformers >= 5 ties lm_head to `shared` even for a v1.1 config (it keeps only the
        # unscaled output); a v1.1 checkpoint has its own head, as here
        hf.lm_head.weight = nn.Parameter(0.1 * torch.randn_like(hf.shared.weight))
    return with_gains(hf)


@torch.no_grad()
def with_gains(hf):
    for name, p in hf.named_parameters():
        if name.endswith("layer_norm.weight"):
            p.add_(0.2 * torch.randn_like(p))
    return hf.eval()


def imported(hf) -> EncoderDecoder:
    cfg, state = t5.from_hf(hf.config.to_dict(), hf.state_dict())
    model = EncoderDecoder(cfg).eval()
    model.load_state_dict(state, strict=True)
    return model


@pytest.fixture
def batch():
    """Three sources of 11 tokens, the second padded after 6; decoder inputs that start at 0."""
    g = torch.Generator().manual_seed(1)
    src, tgt = torch.randint(2, V, (3, 11), generator=g), torch.randint(2, V, (3, 8), generator=g)
    valid = torch.ones(3, 11, dtype=torch.bool)
    valid[1, 6:] = False
    src[~valid] = 0
    tgt[:, 0] = START
    return src, valid, tgt


def max_diff(a, b):
    return (a - b).abs().max().item()


@pytest.mark.parametrize("version", VERSIONS)
def test_encoder_and_decoder_states_equal_t5_model(version, batch):
    src, valid, tgt = batch
    hf = hf_t5(version, T5Model).eval()
    model = imported(hf)
    with torch.no_grad():
        out = hf(input_ids=src, attention_mask=valid.long(), decoder_input_ids=tgt)
        memory = model.encode(src, valid)  # (B, S, C)
        hidden = model.decoder(tgt, memory=memory, memory_valid=valid)  # (B, T, C)
    assert memory.shape == (3, 11, 32)
    assert max_diff(memory[valid], out.encoder_last_hidden_state[valid]) < TOL
    assert max_diff(hidden, out.last_hidden_state) < TOL
    assert out.last_hidden_state.abs().max() > 0.1  # numbers large enough to compare


@pytest.mark.parametrize("version", VERSIONS)
def test_logits_equal_t5_for_conditional_generation(version, batch):
    src, valid, tgt = batch
    hf = hf_t5(version).eval()
    model = imported(hf)
    cfg = model.cfg
    v10 = version == "v1.0"
    assert (cfg.activation, cfg.tie_weights, cfg.scale_head) == (
        ("relu", True, True) if v10 else ("geglu_tanh", False, False))
    assert cfg.rel_shared and cfg.qk_scale == 1.0 and cfg.norm == "rmsnorm" and not cfg.bias
    with torch.no_grad():
        want = hf(input_ids=src, attention_mask=valid.long(), decoder_input_ids=tgt).logits
        got, _ = model(src, tgt, src_valid=valid)
        other_pads = src.masked_fill(~valid, 7)  # what sits under the source padding is unseen
        again, _ = model(other_pads, tgt, src_valid=valid)
    assert max_diff(got, want) < TOL and want.std() > 0.1
    torch.testing.assert_close(again, got, atol=0, rtol=0)


@pytest.mark.parametrize("version", VERSIONS)
def test_greedy_generation_equals_transformers(version, batch):
    src, valid, _ = batch
    hf = hf_t5(version).eval()
    hf.generation_config.eos_token_id = None  # 20 tokens in every row, </s> or not
    with torch.no_grad():
        out = hf.generate(input_ids=src, attention_mask=valid.long(), do_sample=False,
                          num_beams=1, max_new_tokens=20, output_scores=True,
                          return_dict_in_generate=True)
    want = out.sequences  # (B, 21): the start token, then 20
    assert (want[:, 0] == START).all()
    model = imported(hf)
    got = greedy(model, src, valid, 20, start=START, end=None)  # with our KV cache
    assert got == want[:, 1:].tolist()
    assert len({tuple(row) for row in got}) == 3  # each source its own output
    # each step's logits in transformers' cached decoding = ours over the whole target at once
    with torch.no_grad():
        logits, _ = model(src, want[:, :-1], src_valid=valid)  # (B, 20, V)
    assert max_diff(logits, torch.stack(out.scores, 1)) < TOL


@pytest.mark.parametrize("version", [*VERSIONS, "tied-unscaled"])
def test_export_loads_in_transformers_and_imports_back(version, batch, tmp_path):
    """ours -> save_pretrained -> transformers (every weight in place, the same logits); and
    transformers' save_pretrained -> glassformer.from_pretrained (the same logits). The
    "tied-unscaled" model is what transformers >= 5 builds from a v1.1 config: its head tied,
    the output unscaled."""
    src, valid, tgt = batch
    if version == "tied-unscaled":
        torch.manual_seed(0)
        hf = with_gains(T5ForConditionalGeneration(T5Config(**SMALL | VERSIONS["v1.1"])))
    else:
        hf = hf_t5(version).eval()
    ours = imported(hf)
    assert (ours.cfg.tie_weights, ours.cfg.scale_head) != (True, True) or version == "v1.0"
    with torch.no_grad():
        want = hf(input_ids=src, attention_mask=valid.long(), decoder_input_ids=tgt).logits

    assert glassformer.save_pretrained(ours, tmp_path / "ours") == "t5"
    theirs, info = AutoModelForSeq2SeqLM.from_pretrained(tmp_path / "ours",
                                                        output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"], info
    assert not info["mismatched_keys"], info
    again, tokenizer = glassformer.from_pretrained(tmp_path / "ours")
    assert again.cfg == ours.cfg and tokenizer is None
    with torch.no_grad():
        back = theirs.eval()(input_ids=src, attention_mask=valid.long(), decoder_input_ids=tgt)
        assert max_diff(back.logits, want) < TOL
        torch.testing.assert_close(again(src, tgt, src_valid=valid)[0],
                                   ours(src, tgt, src_valid=valid)[0], atol=0, rtol=0)

    hf.save_pretrained(tmp_path / "theirs")
    loaded, _ = glassformer.from_pretrained(tmp_path / "theirs")
    assert loaded.cfg == ours.cfg
    with torch.no_grad():
        assert max_diff(loaded(src, tgt, src_valid=valid)[0], want) < TOL


def test_rmsnorm_is_t5_layer_norm():
    """T5LayerNorm (no mean subtracted, no bias, the variance in fp32) is our rmsnorm with T5's
    eps, to the bit in fp32."""
    from transformers.models.t5.modeling_t5 import T5LayerNorm

    from glassformer.model.norm import make_norm

    cfg = t5.config_from_hf(T5Config(**SMALL).to_dict())
    ours, theirs = make_norm(cfg), T5LayerNorm(32, eps=T5Config().layer_norm_epsilon)
    assert cfg.norm_eps == theirs.variance_epsilon == 1e-6
    assert [n for n, _ in ours.named_parameters()] == ["weight"]  # no bias
    torch.manual_seed(0)
    x = 3 * torch.randn(2, 5, 32)
    x[0, 0] = 1e-4  # a tiny vector: eps decides its scale
    with torch.no_grad():
        ours.weight.normal_(1.0, 0.2)
        theirs.weight.copy_(ours.weight)
        torch.testing.assert_close(ours(x), theirs(x), atol=0, rtol=0)


def test_t5_small_parameter_count():
    """The standard t5-small (transformers' T5Config defaults), built without weights."""
    hf_cfg = T5Config()
    cfg = t5.config_from_hf(hf_cfg.to_dict())
    with torch.device("meta"):
        ours = count_parameters(build(cfg))
        theirs = sum(p.numel() for p in T5ForConditionalGeneration(hf_cfg).parameters())
    C, V_, F, L, table = 512, 32128, 2048, 6, 32 * 8
    shared = V_ * C  # the encoder's, the decoder's and the head's token matrix
    encoder = L * (4 * C * C + 2 * C * F + 2 * C) + table + C  # blocks, bias table, final norm
    decoder = L * (8 * C * C + 2 * C * F + 3 * C) + table + C  # + cross-attention and its norm
    assert ours == theirs == shared + encoder + decoder == 60_506_624


def test_settings_t5_cannot_hold_are_refused_by_name():
    config = T5Config(**SMALL).to_dict()
    with pytest.raises(UnsupportedCheckpoint, match="d_kv=16"):
        t5.from_hf(config | {"d_kv": 16}, {})
    with pytest.raises(UnsupportedCheckpoint, match="num_decoder_layers=2"):
        t5.from_hf(config | {"num_decoder_layers": 2}, {})
    with pytest.raises(UnsupportedCheckpoint, match="feed_forward_proj='gated-relu'"):
        t5.from_hf(config | {"feed_forward_proj": "gated-relu"}, {})
    encoder_only = T5EncoderModel(T5Config(**SMALL))
    with pytest.raises(UnsupportedCheckpoint, match="no decoder"):
        t5.from_hf(encoder_only.config.to_dict(), encoder_only.state_dict())

    model = imported(hf_t5("v1.1"))
    for change, message in [({"norm": "layernorm"}, "norm='layernorm'"),
                            ({"rel_shared": False}, "rel_shared=False"),
                            ({"qk_scale": None}, "qk_scale=0.35"),  # 1/sqrt(8), resolved
                            ({"activation": "geglu"}, "activation='geglu'")]:
        wrong = ModelConfig(**model.cfg.__dict__ | change)
        with pytest.raises(UnsupportedCheckpoint, match=message):
            exported("t5", wrong, EncoderDecoder(wrong).state_dict())


def test_new_config_words_are_checked_and_old_runs_load_unchanged():
    with pytest.raises(ConfigError, match="scale_head.*encdec"):
        ModelConfig(family="gpt", scale_head=True)
    # a run saved before rel_shared and scale_head existed: per-layer tables, no scaling
    old = {"model": {"family": "encdec", "vocab_size": 11, "block_size": 16, "n_layer": 2,
                     "n_head": 2, "n_embd": 16, "position": "t5"}, "train": {"task": "pairs"}}
    cfg = RunConfig.from_dict(json.loads(json.dumps(old))).model
    assert not cfg.rel_shared and not cfg.scale_head
    model = build(cfg)
    assert model.encoder.blocks[0].attn.relative is not model.encoder.blocks[1].attn.relative


# ---- A SentencePiece-style Unigram tokenizer.json, as T5 checkpoints ship ----------------------

SPECIALS = ["<pad>", "</s>", "<unk>"]  # T5's ids 0, 1, 2
LINES = TEXT.splitlines() + ["naïve café, 東京 and 🙂", "  two  spaces,\ttab\nnewline", "",
                             "UPPER lower 12345 x=y+1;", "ünïcödé ßtraße"]


@pytest.fixture(scope="module")
def unigram(tmp_path_factory):
    """A Unigram model trained on the sonnet, Metaspace pre-tokenizer and decoder, and T5's
    post-processor (text </s>), saved as a plain tokenizer.json."""
    tokenizer = Tokenizer(models.Unigram())
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
    tokenizer.decoder = decoders.Metaspace()
    trainer = trainers.UnigramTrainer(vocab_size=120, special_tokens=SPECIALS, unk_token="<unk>",
                                      show_progress=False)
    tokenizer.train_from_iterator(TEXT.splitlines(), trainer)
    tokenizer.post_processor = processors.TemplateProcessing(
        single="$A </s>", pair="$A </s> $B </s>", special_tokens=[("</s>", 1)])
    assert [tokenizer.token_to_id(t) for t in SPECIALS] == [0, 1, 2]
    path = tmp_path_factory.mktemp("unigram") / "tokenizer.json"
    tokenizer.save(str(path))
    return tokenizer, path


def fast(path):
    return PreTrainedTokenizerFast(tokenizer_file=str(path), pad_token="<pad>", eos_token="</s>",
                                   unk_token="<unk>")


def test_unigram_tokenizer_json_loads_like_any_hf_tokenizer(unigram, tmp_path):
    tokenizer, path = unigram
    ours = load_tokenizer(path)
    assert isinstance(ours, HFTokenizer) and ours.vocab_size == tokenizer.get_vocab_size()
    reference = fast(path)
    for line in LINES:
        ids = ours.encode(line)
        assert ids == tokenizer.encode(line, add_special_tokens=False).ids
        assert ids == reference(line, add_special_tokens=False)["input_ids"]
        assert ours.decode(ids) == tokenizer.decode(ids, skip_special_tokens=False) == \
            reference.decode(ids)  # unknown characters come back as <unk>
        # the file's post-processor is kept: model input ends in </s>, as transformers makes it
        assert ours.tokenizer.encode(line).ids == reference(line)["input_ids"] == ids + [END]
    assert any(2 in ours.encode(line) for line in LINES)  # unseen characters: <unk>
    ours.save(tmp_path / "ours.json")  # our run format, and back to the plain file
    assert load_tokenizer(tmp_path / "ours.json").encode(LINES[0]) == ours.encode(LINES[0])
    (tmp_path / "plain.json").write_text(ours.hf_json(), encoding="utf-8")
    assert fast(tmp_path / "plain.json")(LINES[0])["input_ids"] == reference(LINES[0])["input_ids"]


@pytest.fixture
def checkpoint(unigram, tmp_path):
    """A v1.1 T5ForConditionalGeneration directory, as transformers writes it, with the Unigram
    tokenizer.json beside it."""
    tokenizer, path = unigram
    hf = hf_t5("v1.1", vocab_size=tokenizer.get_vocab_size()).eval()
    hf.save_pretrained(tmp_path / "t5")
    (tmp_path / "t5" / "tokenizer.json").write_text(path.read_text(encoding="utf-8"),
                                                    encoding="utf-8")
    return hf, tmp_path / "t5"


def test_encoder_token_vectors_of_padded_text(checkpoint):
    """The courses' path: a T5 directory -> glassformer.from_pretrained -> its tokenizer's ids
    (text </s>), padded -> model.encode -> one C-vector per token, (B, S, C), equal to
    transformers' T5EncoderModel read from the same directory."""
    _, path = checkpoint
    texts = ["Shall I compare thee to a summer's day?", "Thou art", "Rough winds do shake the "
             "darling buds of May, and summer's lease hath all too short a date"]
    model, tokenizer = glassformer.from_pretrained(path)
    rows = [tokenizer.encode(text) + [tokenizer.special("</s>")] for text in texts]
    S = max(map(len, rows))
    ids = torch.tensor([row + [0] * (S - len(row)) for row in rows])  # (B, S), pad id 0
    valid = torch.tensor([[True] * len(row) + [False] * (S - len(row)) for row in rows])
    with torch.no_grad():
        states = model.encode(ids, valid)  # (B, S, C)
    reference = fast(path / "tokenizer.json")(texts, padding=True, return_tensors="pt")
    assert ids.tolist() == reference["input_ids"].tolist()
    assert valid.long().tolist() == reference["attention_mask"].tolist()
    encoder = T5EncoderModel.from_pretrained(path).eval()
    with torch.no_grad():
        want = encoder(**reference).last_hidden_state
    assert states.shape == (3, S, 32)
    assert max_diff(states[valid], want[valid]) < TOL


def test_checkpoint_with_unigram_tokenizer_converts_to_a_run_and_back(checkpoint, batch,
                                                                      tmp_path, capsys):
    hf, path = checkpoint
    src, valid, tgt = batch
    assert main(["convert", str(path), str(tmp_path / "run")]) == 0
    assert "wrote run directory" in capsys.readouterr().out
    run = load_run(tmp_path / "run")
    assert run.cfg.model.family == "encdec" and run.cfg.model.rel_shared
    original = Tokenizer.from_file(str(path / "tokenizer.json"))
    assert run.tokenizer.encode(LINES[0]) == original.encode(LINES[0], add_special_tokens=False).ids
    with torch.no_grad():
        want = hf(input_ids=src, attention_mask=valid.long(), decoder_input_ids=tgt).logits
        assert max_diff(run.model(src, tgt, src_valid=valid)[0], want) < TOL
    assert main(["convert", str(tmp_path / "run"), str(tmp_path / "back")]) == 0
    assert "wrote Hugging Face t5 directory" in capsys.readouterr().out
    theirs, info = AutoModelForSeq2SeqLM.from_pretrained(tmp_path / "back",
                                                        output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"], info
    with torch.no_grad():
        back = theirs.eval()(input_ids=src, attention_mask=valid.long(), decoder_input_ids=tgt)
    assert max_diff(back.logits, want) < TOL
