"""Ready comparisons from the courses, as data: each names its recipes (dotted overrides on the
chosen preset) and, where the lesson needs them, the longer-than-trained lengths to evaluate
(multiples of the training block), a recipe whose width is chosen to match the first recipe's
parameter count, and the sequence lengths at which to time training speed.
`glassformer compare NAME` runs one; `--recipe` spells your own."""

COMPARISONS = {
    "warmup": {
        "title": "Learning-rate warmup vs none",
        "about": "The same model and peak learning rate, with a linear warmup over the first "
                 "100 steps or straight at the peak. Warmup matters most early: compare the "
                 "first evaluations.",
        "recipes": {"no warmup": {"train.warmup_steps": "0"},
                    "warmup 100": {"train.warmup_steps": "100"}},
    },
    "positions": {
        "title": "Positions: learned vs sinusoidal vs RoPE vs ALiBi",
        "about": "Four ways of telling attention where tokens are. After training, each model "
                 "is also evaluated on windows 2 and 4 times longer than it was trained on: "
                 "a learned table has no rows there, and the others are asked to extrapolate.",
        "recipes": {"learned": {"model.position": "learned"},
                    "sinusoidal": {"model.position": "sinusoidal"},
                    "rope": {"model.position": "rope"},
                    "alibi": {"model.position": "alibi"}},
        "longer": [2, 4],
    },
    "norm-placement": {
        "title": "Pre-norm vs post-norm",
        "about": "x + f(norm(x)) (GPT-2, with a final norm) against norm(x + f(x)) (the original "
                 "transformer) at the same learning rate.",
        "recipes": {"pre-norm": {"model.norm_placement": "pre"},
                    "post-norm": {"model.norm_placement": "post"}},
    },
    "activation": {
        "title": "Feed-forward: ReLU vs GELU vs SwiGLU",
        "about": "SwiGLU's hidden width is 2/3 of 4C so that the parameter count stays close.",
        "recipes": {"relu": {"model.activation": "relu"}, "gelu": {"model.activation": "gelu"},
                    "swiglu": {"model.activation": "swiglu"}},
    },
    "scaling": {
        "title": "Attention scores with vs without the sqrt(D) scaling",
        "about": "softmax(q.k / sqrt(D)) against softmax(q.k), D the head dimension. With unit "
                 "variance entries q.k has variance D, so unscaled scores spread further as "
                 "heads widen, the softmax turns nearly one-hot and its gradients shrink. The "
                 "gap grows with D (here n_embd / n_head).",
        "recipes": {"scaled": {"model.qk_scale": "none"},
                    "unscaled": {"model.qk_scale": "1.0"}},
    },
    "recurrence": {
        "title": "Attention vs recurrence: a transformer and an LSTM of similar size",
        "about": "The courses' first lesson. The LSTM (torch.nn.LSTM, the same number of layers, "
                 "a tied embedding and head) gets the width that brings its parameter count "
                 "closest to the transformer's; both see the same batches. The speed table "
                 "times both as the sequence grows: attention's work per token grows with T "
                 "but its positions run in parallel, the LSTM's steps run one after another.",
        "recipes": {"transformer": {}, "lstm": {"model.family": "lstm"}},
        "match_size": "lstm",
        "lengths": [64, 128, 256, 512],
    },
}
