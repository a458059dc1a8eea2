"""Small Hugging Face models with random weights (no download), and checks shared by the interop
tests: a checkpoint written by us loads in `transformers` with every weight in its place."""

import torch

from glassformer.tokenizers import CharTokenizer
from tests.helpers import SONNET

TEXT = SONNET  # a text to train tokenizers on
V = 97  # vocabulary of every test model: CHARS[i] is token id i
CHARS = CharTokenizer([chr(33 + i) for i in range(V)])
TOL = 1e-5


@torch.no_grad()
def randomize(model, std: float, seed: int = 0):
    """Every matrix N(0, std), every bias N(0, 0.2), every norm gain 1 + N(0, 0.2), so that a
    swapped, transposed or dropped weight shows in the logits (HF's init leaves them 0 and 1)."""
    torch.manual_seed(seed)
    for name, p in model.named_parameters():
        if p.dim() >= 2:
            p.normal_(0.0, std)
        else:
            p.copy_((0.0 if name.endswith("bias") else 1.0) + 0.2 * torch.randn_like(p))
    return model.float().eval()


def hf_gpt2(std=0.1, **config):
    from transformers import GPT2Config, GPT2LMHeadModel

    fields = dict(vocab_size=V, n_positions=96, n_embd=32, n_layer=2, n_head=4,
                  bos_token_id=None, eos_token_id=None) | config
    return randomize(GPT2LMHeadModel(GPT2Config(**fields)), std)


def hf_llama(std=0.1, **config):
    from transformers import LlamaConfig, LlamaForCausalLM

    fields = dict(vocab_size=V, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=96,
                  rms_norm_eps=1e-6, tie_word_embeddings=False, bos_token_id=None,
                  eos_token_id=None, pad_token_id=None) | config
    return randomize(LlamaForCausalLM(LlamaConfig(**fields)), std)


def load_in_transformers(path):
    """The model `transformers` builds from directory `path`, failing on any weight that is
    missing, unexpected or of the wrong shape."""
    from transformers import AutoModelForCausalLM

    model, info = AutoModelForCausalLM.from_pretrained(path, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"], info
    assert not info["mismatched_keys"] and not info["error_msgs"], info
    return model.float().eval()


def random_ids(B=2, T=20, seed=1):
    torch.manual_seed(seed)
    return torch.randint(V, (B, T))


def hf_greedy(hf, prompt: torch.Tensor, n: int) -> list[int]:
    """The `n` ids `transformers`' generate picks greedily after the 1-D `prompt`."""
    with torch.no_grad():
        out = hf.generate(prompt[None], attention_mask=torch.ones(1, len(prompt)),
                          do_sample=False, max_new_tokens=n, min_new_tokens=n)
    return out[0, len(prompt):].tolist()


def sentence_bert_dir(path, pooling: str = "mean", normalize: bool = True):
    """A small sentence-transformers directory at `path`, as all-MiniLM-L6-v2's is laid out:
    a random BertModel (names without "bert.", with its pooler), a WordPiece tokenizer.json
    of TEXT's words and characters that pads to 64 and truncates at 16 (as MiniLM's pads and
    cuts at 128), and
    modules.json: Transformer -> Pooling (`pooling`) [-> Normalize]. Returns the BertModel."""
    import json

    from tokenizers import BertWordPieceTokenizer, processors
    from transformers import BertConfig, BertModel

    # a fixed vocabulary (the trainer's order of equally frequent pieces varies from run to
    # run): specials, the text's words, and each of its characters alone and inside a word
    words, chars = sorted(set(TEXT.lower().split())), sorted(set(TEXT.lower()) - set(" \n"))
    vocab = (["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + words + chars
             + ["##" + c for c in chars])
    wordpiece = BertWordPieceTokenizer({t: i for i, t in enumerate(dict.fromkeys(vocab))},
                                       lowercase=True, strip_accents=True)
    specials = [(t, wordpiece.token_to_id(t)) for t in ("[CLS]", "[SEP]")]
    wordpiece.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=specials)
    wordpiece.enable_padding(length=64, pad_id=wordpiece.token_to_id("[PAD]"))
    wordpiece.enable_truncation(16)
    hf = randomize(BertModel(BertConfig(
        vocab_size=wordpiece.get_vocab_size(), hidden_size=32, num_hidden_layers=2,
        num_attention_heads=4, intermediate_size=64, max_position_embeddings=96)), std=0.1)
    hf.save_pretrained(path)
    wordpiece.save(str(path / "tokenizer.json"))
    kinds = ["Transformer", "Pooling"] + (["Normalize"] if normalize else [])
    modules = [{"idx": i, "name": str(i), "path": ["", "1_Pooling", "2_Normalize"][i],
                "type": f"sentence_transformers.models.{kind}"} for i, kind in enumerate(kinds)]
    (path / "modules.json").write_text(json.dumps(modules))
    (path / "1_Pooling").mkdir()
    (path / "1_Pooling" / "config.json").write_text(json.dumps(
        {"word_embedding_dimension": 32} | {f"pooling_mode_{m}": m.startswith(pooling)
                                            for m in ("cls_token", "mean_tokens", "max_tokens")}))
    return hf


def sentence_reference(hf, path, texts, pooling: str = "mean", normalize: bool = True):
    """sentence-transformers' recipe on transformers' own outputs: transformers' tokenizer of
    `path` (padding the batch), the BertModel's last hidden states, pooled over the attention
    mask, then L2-normalised."""
    from transformers import BertTokenizerFast

    batch = BertTokenizerFast(tokenizer_file=str(path / "tokenizer.json"))(
        texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        x = hf(**batch).last_hidden_state  # (B, T, C)
    mask = batch["attention_mask"][:, :, None].to(x.dtype)  # (B, T, 1)
    if pooling == "cls":
        v = x[:, 0]
    elif pooling == "max":
        v = x.masked_fill(mask == 0, -1e9).amax(1)
    else:
        v = (x * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
    return torch.nn.functional.normalize(v, dim=-1) if normalize else v
