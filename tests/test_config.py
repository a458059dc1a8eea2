"""Configuration: JSON round trips, validation messages that name the field, dotted overrides,
presets and sampling settings."""

import dataclasses
import json
import re
import typing

import pytest

from glassformer.config import (FORMS_SCORES, POSITION_ACTS_ON, PRESETS, Activation, Attention,
                                ModelConfig, Position, RunConfig, SampleConfig, TrainConfig,
                                apply_overrides, from_dict, parse_value, preset)
from glassformer.errors import ConfigError

# "position must be 'learned' or 'sinusoidal' or ..., got 'absolute'": every allowed word listed
ALLOWED_POSITIONS = re.escape(
    "position must be " + " or ".join(map(repr, typing.get_args(Position))) + ", got 'absolute'")


# --- JSON round trip ------------------------------------------------------------------------------

@pytest.mark.parametrize("name", list(PRESETS))
def test_preset_round_trips_through_json(name, tmp_path):
    run = preset(name)
    path = tmp_path / "run" / "config.json"
    run.save(path)
    loaded = RunConfig.load(path)
    assert loaded == run
    assert isinstance(loaded.model, ModelConfig) and isinstance(loaded.train, TrainConfig)
    on_disk = json.loads(path.read_text())
    assert set(on_disk) == {"model", "train"}
    for section, values in PRESETS[name].items():  # the preset's own values, not the defaults
        for key, value in values.items():
            assert on_disk[section][key] == value
    assert not list(path.parent.glob("*.tmp"))  # the atomic write left no temporary file


def test_non_default_values_round_trip(tmp_path):
    run = RunConfig(
        model=ModelConfig(vocab_size=7, block_size=9, n_layer=1, n_head=3, n_embd=12, dropout=0.25,
                          bias=False, position="sinusoidal", activation="relu",
                          norm_placement="post", norm_eps=1e-6, tie_weights=False,
                          kernel="math", n_kv_head=1, rope_base=500.0, ffn_hidden=40,
                          norm="rmsnorm", qk_norm=True),
        train=TrainConfig(text="corpus.txt", lr=3e-4, min_lr=0.0, device="cpu", seed=7),
    )
    run.save(tmp_path / "config.json")
    loaded = RunConfig.load(tmp_path / "config.json")
    assert loaded == run
    assert type(loaded.model.norm_eps) is float and type(loaded.model.n_layer) is int


def test_missing_sections_take_defaults():
    assert RunConfig.from_dict({}) == RunConfig()
    assert RunConfig.from_dict({"model": {"n_layer": 2}}).model.n_layer == 2


def test_load_corrupt_json_raises_config_error(tmp_path):
    path = tmp_path / "config.json"
    path.write_text('{"model": {"n_layer": 2,')
    with pytest.raises(ConfigError, match="not valid JSON"):
        RunConfig.load(path)


def test_load_missing_or_non_object_raises_config_error(tmp_path):
    with pytest.raises(ConfigError, match="no config file"):
        RunConfig.load(tmp_path / "absent.json")
    path = tmp_path / "list.json"
    path.write_text("[1, 2]")
    with pytest.raises(ConfigError, match="JSON object"):
        RunConfig.load(path)


# --- validation -------------------------------------------------------------------------------

def test_n_embd_must_divide_by_n_head():
    with pytest.raises(ConfigError, match=r"n_embd must be divisible by n_head \(6\)") as err:
        ModelConfig(n_head=6, n_embd=100)
    assert "n_embd=102" in str(err.value)  # the nearest valid width


@pytest.mark.parametrize("name", ["vocab_size", "block_size", "n_layer", "n_head", "n_embd"])
@pytest.mark.parametrize("value", [0, -1])
def test_sizes_must_be_positive(name, value):
    match = rf"ModelConfig\.{name} must be a positive integer"
    with pytest.raises(ConfigError, match=match) as err:
        ModelConfig(**{name: value})
    assert f"got {value}" in str(err.value)


def test_rope_needs_an_even_head_dim():
    with pytest.raises(ConfigError, match=r"position .*head dim n_embd/n_head \(5\) must be even"):
        ModelConfig(n_embd=20, n_head=4, position="rope")
    assert ModelConfig(n_embd=20, n_head=4, position="learned").head_dim == 5


@pytest.mark.parametrize("activation,ffn_hidden,expected", [
    ("gelu", None, 4 * 384), ("relu", None, 4 * 384), ("swiglu", None, 1024),
    ("geglu", None, 1024), ("swiglu", 1000, 1000), ("gelu", 100, 100)])
def test_feed_forward_hidden_width(activation, ffn_hidden, expected):
    assert ModelConfig(activation=activation, ffn_hidden=ffn_hidden).hidden == expected


def test_moe_top_k_must_fit_the_experts():
    with pytest.raises(ConfigError, match=r"moe_top_k must be in \[1, moe_experts=2\], got 3"):
        ModelConfig(moe_experts=2, moe_top_k=3)
    assert ModelConfig(moe_experts=0, moe_top_k=2).moe_experts == 0  # dense: top_k unused


def test_kv_heads_default_to_the_query_heads():
    assert ModelConfig(n_head=6).kv_heads == 6
    assert ModelConfig(n_head=6, n_kv_head=2).kv_heads == 2


def test_config_error_is_a_value_error():
    assert issubclass(ConfigError, ValueError)


@pytest.mark.parametrize("field,value,match", [
    ("dropout", 1.0, r"dropout must be in \[0, 1\)"),
    ("dropout", -0.1, r"dropout must be in \[0, 1\)"),
    ("norm_eps", 0.0, "norm_eps must be positive"),
    ("n_kv_head", 4, r"n_kv_head must divide n_head \(6\)"),
    ("n_kv_head", 0, r"n_kv_head must divide n_head"),
    ("ffn_hidden", 0, "ffn_hidden must be a positive integer"),
    ("rope_base", -1.0, "rope_base must be positive"),
    ("rel_buckets", 3, "rel_buckets must be at least 4"),
    ("rel_max_distance", 16, r"rel_max_distance must be larger than rel_buckets // 2 \(16\)"),
    ("moe_experts", -1, r"moe_experts must be >= 0"),
    ("moe_aux_weight", -0.1, "moe_aux_weight must be >= 0"),
    ("norm", "batchnorm", r"norm must be 'layernorm' or 'rmsnorm'"),
    ("activation", "tanh",
     "activation must be " + " or ".join(map(repr, typing.get_args(Activation)))),
])
def test_model_ranges(field, value, match):
    with pytest.raises(ConfigError, match=match):
        ModelConfig(**{field: value})


@pytest.mark.parametrize("field,value,match", [
    ("min_lr", 1.0, r"min_lr must be in \[0, lr"),
    ("val_fraction", 1.0, r"val_fraction must be in \(0, 1\)"),
    ("beta2", 1.0, r"beta2 must be in \[0, 1\)"),
    ("batch_size", 0, "batch_size must be a positive integer"),
    ("warmup_steps", -1, "warmup_steps must be >= 0"),
    ("device", "tpu", "device must be"),
    ("seed", 2**64, r"seed must be in \[0, 2\*\*64\)"),
    ("seed", -1, r"seed must be in \[0, 2\*\*64\)"),
])
def test_train_ranges(field, value, match):
    with pytest.raises(ConfigError, match=match):
        TrainConfig(**{field: value})


def test_the_fields_of_task_tsv_and_of_a_classifier_go_together():
    with pytest.raises(ConfigError, match="val_tsv is a text<TAB>label file of task 'tsv'"):
        TrainConfig(task="tsv", train_tsv="train.tsv")
    with pytest.raises(ConfigError, match="train_tsv is a text<TAB>label file of task 'tsv'"):
        TrainConfig(task="lm", train_tsv="train.tsv", val_tsv="test.tsv")
    with pytest.raises(ConfigError, match="init_weights must be true with lora_rank"):
        TrainConfig(lora_rank=4, init_weights=False)
    with pytest.raises(ConfigError, match=r"labels must name each of the n_classes=3 outputs"):
        ModelConfig(family="bert", n_classes=3, labels=("a", "b"))
    tsv = TrainConfig(task="tsv", train_tsv="train.tsv", val_tsv="test.tsv")
    with pytest.raises(ConfigError, match="train.task='tsv' needs a classifier"):
        RunConfig(ModelConfig(family="bert"), tsv)
    labelled = ModelConfig(family="bert", n_classes=2, labels=("no", "yes"))
    assert RunConfig.from_dict(RunConfig(labelled, tsv).to_dict()).model.labels == ("no", "yes")
    assert "labels" not in labelled.architecture()  # names, not numbers


def test_unknown_option_suggests_the_near_name():
    with pytest.raises(ConfigError, match=r"unknown option 'n_layers'.*did you mean 'n_layer'\?"):
        from_dict(ModelConfig, {"n_layers": 2})
    with pytest.raises(ConfigError, match=r"did you mean 'model'\?"):
        RunConfig.from_dict({"modle": {}})
    with pytest.raises(ConfigError, match=r"did you mean 'lr'\?"):
        RunConfig.from_dict({"train": {"lrr": 0.1}})
    with pytest.raises(ConfigError, match="known: family, vocab_size, block_size"):  # nothing close
        from_dict(ModelConfig, {"zzzzzz": 1})


def test_unknown_literal_lists_the_allowed_values():
    with pytest.raises(ConfigError,
                       match=ALLOWED_POSITIONS):
        ModelConfig(position="absolute")
    with pytest.raises(ConfigError, match=r"attention must be 'softmax' or 'linear'"):
        from_dict(ModelConfig, {"attention": "flash"})


# --- attention: the algorithm, and its kernel ------------------------------------------------

@pytest.mark.parametrize("kernel", ["sdpa", "math"])
def test_old_config_files_name_the_kernel_as_attention_and_still_load(tmp_path, kernel):
    """Runs saved before `kernel` existed wrote attention="sdpa" or "math" (softmax attention,
    computed that way)."""
    run = RunConfig(model=ModelConfig(n_layer=2, kernel=kernel))
    on_disk = run.to_dict()
    del on_disk["model"]["kernel"]
    on_disk["model"]["attention"] = kernel
    (tmp_path / "config.json").write_text(json.dumps(on_disk))
    assert RunConfig.load(tmp_path / "config.json") == run


def test_new_config_files_keep_algorithm_and_kernel(tmp_path):
    run = RunConfig(model=ModelConfig(attention="linear", kernel="math"))
    run.save(tmp_path / "config.json")
    on_disk = json.loads((tmp_path / "config.json").read_text())["model"]
    assert (on_disk["attention"], on_disk["kernel"]) == ("linear", "math")
    assert RunConfig.load(tmp_path / "config.json") == run


@pytest.mark.parametrize("kernel", ["sdpa", "math"])
def test_the_old_attention_words_on_the_command_line_point_to_the_kernel(kernel):
    with pytest.raises(ConfigError, match=rf"attention='{kernel}' is now kernel='{kernel}' "
                                          rf"\(--model\.kernel={kernel}\)"):
        apply_overrides(preset("tiny"), {"model.attention": kernel})
    assert apply_overrides(preset("tiny"), {"model.kernel": kernel}).model.kernel == kernel


# --- the tables of what each word does --------------------------------------------------------

def test_every_position_scheme_says_where_it_acts():
    assert set(POSITION_ACTS_ON) == set(typing.get_args(Position))
    assert set(POSITION_ACTS_ON.values()) <= {"embeddings", "qk", "scores", "nowhere"}


def test_every_attention_algorithm_says_whether_it_forms_scores():
    assert set(FORMS_SCORES) == set(typing.get_args(Attention))


@pytest.mark.parametrize("field,value,match", [
    ("n_layer", 2.5, r"ModelConfig\.n_layer must be int, got 2\.5"),
    ("n_layer", "2", r"ModelConfig\.n_layer must be int"),
    ("n_layer", True, r"ModelConfig\.n_layer must be int"),
    ("bias", "yes", r"ModelConfig\.bias must be bool, got 'yes'"),
    ("bias", 1, r"ModelConfig\.bias must be bool"),
    ("dropout", "0.1", r"ModelConfig\.dropout must be float"),
])
def test_wrong_types(field, value, match):
    with pytest.raises(ConfigError, match=match):
        ModelConfig(**{field: value})
    with pytest.raises(ConfigError, match=match):  # the same check from JSON
        from_dict(ModelConfig, {field: value})


def test_an_int_is_a_valid_float():
    assert ModelConfig(dropout=0).dropout == 0
    assert TrainConfig(lr=1).lr == 1


def test_from_dict_rejects_non_objects():
    with pytest.raises(ConfigError, match="ModelConfig must be a JSON object, got list"):
        from_dict(ModelConfig, [1, 2])
    with pytest.raises(ConfigError, match="must be a JSON object"):
        RunConfig.from_dict({"model": "tiny"})


# --- dotted overrides -----------------------------------------------------------------------------

def test_apply_overrides_parses_by_field_type():
    run = preset("tiny")
    new = apply_overrides(run, {
        "model.n_layer": "4",            # int
        "model.dropout": "0.1",          # float
        "model.bias": "false",           # bool
        "model.tie_weights": "0",        # bool
        "model.position": "sinusoidal",  # Literal
        "train.lr": "3e-4",              # float, scientific
        "train.min_lr": "0",             # float from an int string
        "train.text": "None",            # optional str
        "train.device": "cpu",           # Literal
    })
    assert new.model.n_layer == 4 and type(new.model.n_layer) is int
    assert new.model.dropout == 0.1
    assert new.model.bias is False and new.model.tie_weights is False
    assert new.model.position == "sinusoidal"
    assert new.train.lr == 3e-4 and new.train.min_lr == 0.0
    assert new.train.text is None and new.train.device == "cpu"
    # everything else kept; the original untouched
    assert new.model.n_embd == run.model.n_embd and new.train.batch_size == run.train.batch_size
    assert run.model.n_layer == 2 and run.model.bias is True
    assert dataclasses.replace(new.model, n_layer=2, dropout=0.0, bias=True, tie_weights=True,
                               position="learned") == run.model


def test_apply_overrides_later_keys_see_earlier_ones():
    new = apply_overrides(RunConfig(), {"train.lr": "0.5", "train.min_lr": "0.4"})
    assert (new.train.lr, new.train.min_lr) == (0.5, 0.4)


def test_apply_overrides_text_path():
    assert apply_overrides(RunConfig(), {"train.text": "my.txt"}).train.text == "my.txt"


@pytest.mark.parametrize("key,raw,match", [
    ("optim.lr", "1", r"unknown option --optim\.lr"),
    ("model", "1", r"unknown option --model;"),
    ("lr", "1", "unknown option --lr"),
    ("model.n_layers", "4",
     r"unknown option 'n_layers' in --model options; did you mean 'n_layer'"),
    ("train.lrr", "1", r"did you mean 'lr'"),
    ("model.n_layer", "four", r"model\.n_layer must be an integer, got 'four'"),
    ("model.n_layer", "2.5", r"model\.n_layer must be an integer, got '2\.5'"),
    ("train.lr", "fast", r"train\.lr must be a number, got 'fast'"),
    ("model.bias", "maybe", r"model\.bias must be true or false, got 'maybe'"),
    ("model.position", "absolute", ALLOWED_POSITIONS),
    ("model.n_head", "5", r"n_embd must be divisible by n_head \(5\)"),
    ("model.n_layer", "0", r"n_layer must be a positive integer"),
])
def test_apply_overrides_rejects(key, raw, match):
    with pytest.raises(ConfigError, match=match):
        apply_overrides(preset("tiny"), {key: raw})


def test_parse_value_for_sampling_types():
    hints = typing.get_type_hints(SampleConfig)
    assert parse_value(hints["top_k"], "none", "top_k") is None
    assert parse_value(hints["top_k"], "null", "top_k") is None
    assert parse_value(hints["top_k"], "40", "top_k") == 40
    assert parse_value(hints["seed"], "7", "seed") == 7
    assert parse_value(hints["stop"], "\n\n,END", "stop") == ("\n\n", "END")
    assert parse_value(hints["stop"], "", "stop") == ()
    for raw in ("true", "True", "1", "yes"):
        assert parse_value(bool, raw, "x") is True
    for raw in ("false", "FALSE", "0", "no"):
        assert parse_value(bool, raw, "x") is False
    with pytest.raises(ConfigError, match="top_k must be an integer"):
        parse_value(hints["top_k"], "many", "top_k")


# --- presets --------------------------------------------------------------------------------------

def test_unknown_preset_lists_the_presets():
    with pytest.raises(ConfigError, match="unknown preset 'nope'") as err:
        preset("nope")
    for name in PRESETS:
        assert name in str(err.value)


def test_gpt2_preset_values():
    m = preset("gpt2").model
    assert (m.vocab_size, m.block_size, m.n_layer, m.n_head, m.n_embd) == (50257, 1024, 12, 12, 768)
    assert m.bias and m.tie_weights and m.norm_placement == "pre" and m.position == "learned"
    assert m.activation == "gelu" and m.head_dim == 64


# --- sampling -------------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs,match", [
    ({"temperature": -0.1}, r"SampleConfig\.temperature must be >= 0"),
    ({"top_p": 0.0}, r"SampleConfig\.top_p must be in \(0, 1\]"),
    ({"top_p": 1.5}, r"SampleConfig\.top_p must be in \(0, 1\]"),
    ({"top_p": -0.5}, r"SampleConfig\.top_p must be in \(0, 1\]"),
    ({"top_k": 0}, r"SampleConfig\.top_k must be >= 1"),
    ({"top_k": -3}, r"SampleConfig\.top_k must be >= 1"),
    ({"max_new_tokens": -1}, r"SampleConfig\.max_new_tokens must be >= 0"),
    ({"repetition_penalty": 0.0}, r"SampleConfig\.repetition_penalty must be positive"),
    ({"presence_penalty": 2.5}, r"SampleConfig\.presence_penalty must be in \[-2, 2\]"),
    ({"frequency_penalty": -2.1}, r"SampleConfig\.frequency_penalty must be in \[-2, 2\]"),
    ({"frequency_penalty": float("nan")}, r"SampleConfig\.frequency_penalty must be in"),
    ({"stop": ("end", "")}, r"SampleConfig\.stop must not contain empty strings"),
    ({"top_k": 2.0}, r"SampleConfig\.top_k must be"),
    ({"seed": 2**64}, r"SampleConfig\.seed must be in \[0, 2\*\*64\) \(or None"),
    ({"seed": -1}, r"SampleConfig\.seed must be in \[0, 2\*\*64\)"),
])
def test_sample_config_rejects(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        SampleConfig(**kwargs)


def test_sample_config_edges_are_valid():
    assert SampleConfig(temperature=0).temperature == 0  # greedy
    assert SampleConfig(top_p=1.0, top_k=1).top_k == 1
    assert SampleConfig(top_k=None).top_k is None
    assert SampleConfig(presence_penalty=-2, frequency_penalty=2.0).presence_penalty == -2
    assert SampleConfig(seed=2**64 - 1).seed == 2**64 - 1  # torch's largest seed
    assert from_dict(SampleConfig, {"stop": ["\n\n"]}).stop == ("\n\n",)  # JSON list -> tuple


def test_overrides_are_checked_together():
    """A lower lr with a lower min_lr is fine whichever comes first on the command line."""
    for order in (("train.lr", "train.min_lr"), ("train.min_lr", "train.lr")):
        values = {"train.lr": "5e-5", "train.min_lr": "1e-5"}
        cfg = apply_overrides(preset("tiny"), {k: values[k] for k in order})
        assert (cfg.train.lr, cfg.train.min_lr) == (5e-5, 1e-5)
    with pytest.raises(ConfigError, match="min_lr must be in"):
        apply_overrides(preset("tiny"), {"train.lr": "5e-5"})  # below the default min_lr 1e-4


# --- the bert family's head -------------------------------------------------------------------

def test_the_head_word_is_checked_by_name():
    with pytest.raises(ConfigError, match="head must be 'mlm' or 'pooler' or 'none', got 'lm'"):
        ModelConfig(family="bert", head="lm")
    with pytest.raises(ConfigError, match="head .*needs family='bert'"):
        ModelConfig(family="gpt", head="pooler")
    assert ModelConfig(family="bert", head="none").head == "none"


def test_run_configs_from_before_the_head_word_load_as_masked_lm(tmp_path):
    """Runs saved before `head`, `normalize_embeddings` and pooling "max" existed."""
    run = RunConfig.from_dict(PRESETS["bert-shakespeare"])
    on_disk = run.to_dict()
    del on_disk["model"]["head"], on_disk["model"]["normalize_embeddings"]
    (tmp_path / "config.json").write_text(json.dumps(on_disk))
    loaded = RunConfig.load(tmp_path / "config.json")
    assert loaded == run and loaded.model.head == "mlm" and not loaded.model.normalize_embeddings
