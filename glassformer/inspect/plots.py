"""Figures as PNG files, drawn with matplotlib's Agg canvas (no display, no pyplot state).

Sizes are fixed (inches x DPI) so that a figure's pixel size follows from what it shows.
"""

from pathlib import Path

DPI = 100
LABEL_INCHES = 0.11  # room for one token label on a heatmap axis


def panel_inches(n_tokens: int) -> float:
    """The side of one heatmap panel: 3.5 inches, growing with the tokens up to 12."""
    return min(12.0, max(3.5, LABEL_INCHES * n_tokens))


def new_figure(width_in: float, height_in: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width_in, height_in), dpi=DPI)
    FigureCanvasAgg(fig)
    return fig


def save(fig, path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI)  # no bbox="tight": the pixel size stays width_in x DPI
    return path


def token_label(token: str) -> str:
    """A token as a label: a space as '␣', a newline as '\\n', a tab as '\\t'; the empty token
    as "''"."""
    return token.replace(" ", "␣").replace("\n", "\\n").replace("\t", "\\t") or "''"


def attention_grid(weights: dict, labels: dict, path, title: str = "") -> Path:
    """attention_figure, saved as a PNG."""
    return save(attention_figure(weights, labels, title), path)


def attention_figure(weights: dict, labels: dict, title: str = ""):
    """One heatmap per (module, head): rows are modules (layers), columns heads; queries down,
    keys across, token labels on both axes (upright, unless tokens are longer than 2
    characters); each panel's colours run from 0 to its largest weight, read on its colour bar.
    weights {name: (B, H, T, S)}, batch element 0; labels {name: (T query tokens, S key
    tokens)}. Each panel is panel_inches(longest axis) square, so the image is rows x that x
    DPI high and (max heads) x that x DPI wide; the layout engine keeps the title clear of
    the panels."""
    names = list(weights)
    n_heads = max(w.size(1) for w in weights.values())
    longest = max(max(w.size(2), w.size(3)) for w in weights.values())
    side = panel_inches(longest)
    fig = new_figure(n_heads * side, len(names) * side)
    fig.set_layout_engine("constrained")
    axes = fig.subplots(len(names), n_heads, squeeze=False)
    for row, name in enumerate(names):
        w = weights[name][0]  # (H, T, S)
        tokens, keys = labels[name]
        upright = max(len(token_label(t)) for t in [*tokens, *keys]) <= 2
        for h in range(n_heads):
            ax = axes[row][h]
            if h >= w.size(0):
                ax.axis("off")
                continue
            image = ax.imshow(w[h].numpy(), cmap="viridis", vmin=0.0)  # bright: its largest
            fig.colorbar(image, ax=ax, fraction=0.046, pad=0.02).ax.tick_params(labelsize=6)
            ax.set_title(f"{name} h{h}", fontsize=8)
            every = max(1, round(longest * LABEL_INCHES / side))  # thin labels that don't fit
            ax.set_xticks(range(0, len(keys), every), [token_label(t) for t in keys[::every]],
                          fontsize=7, rotation=0 if upright else 60,
                          ha="center" if upright else "right")
            ax.set_yticks(range(0, len(tokens), every),
                          [token_label(t) for t in tokens[::every]], fontsize=7)
            ax.tick_params(length=0, pad=1)
    if title:
        fig.suptitle(title, fontsize=9)
    return fig


def next_token_chart(table: list[dict], settings: list[str], path, title: str = "") -> Path:
    """Grouped bars: each candidate's probability under each sampling setting.
    table [{token, probs: {setting: p}}]; 8 x 4 inches."""
    fig = new_figure(8, 4)
    ax = fig.subplots()
    width = 0.8 / len(settings)
    for i, setting in enumerate(settings):
        xs = [j + i * width for j in range(len(table))]
        ax.bar(xs, [row["probs"][setting] for row in table], width, label=setting)
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(table))],
                  [token_label(row["token"]) for row in table])  # a space shows, as '␣'
    ax.set_xlabel("next token (␣ a space, \\n a line break)")
    ax.set_ylabel("probability")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()  # moves the axes inside the fixed canvas; the pixel size is unchanged
    return save(fig, path)


def loss_curves(curves: dict, path, x: str, xlabel: str, title: str = "") -> Path:
    """Train loss (lines) and val loss (dots) of each recipe against `x` ("step" or "seconds").
    curves {recipe: {"train": [(step, seconds, loss)], "val": [(step, seconds, loss)]}}; 7 x 4.5 in."""
    fig = new_figure(7, 4.5)
    draw_losses(fig.subplots(), curves, x, xlabel, title)
    fig.tight_layout()
    return save(fig, path)


def loss_panels(curves: dict, path, title: str = "", val_label: str = "val") -> Path:
    """The same curves against step (left) and wall-clock seconds (right); 12 x 4.5 inches."""
    fig = new_figure(12, 4.5)
    left, right = fig.subplots(1, 2)
    draw_losses(left, curves, "step", "step", "", val_label)
    draw_losses(right, curves, "seconds", "wall-clock seconds", "", val_label)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return save(fig, path)


def draw_losses(ax, curves: dict, x: str, xlabel: str, title: str = "",
                val_label: str = "val") -> None:
    """loss_curves's lines on one axis (points without a time are left out against seconds)."""
    column = {"step": 0, "seconds": 1}[x]
    for i, (name, curve) in enumerate(curves.items()):
        colour = f"C{i}"
        for kind, style, label in (("train", "-", "train"), ("val", "o--", val_label)):
            points = [p for p in curve[kind] if p[column] is not None]
            ax.plot([p[column] for p in points], [p[2] for p in points], style, color=colour,
                    alpha=0.8 if kind == "train" else 1.0, label=f"{name} ({label})")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("loss (nats/token)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)


def heatmap(values, row_labels: list[str], col_labels: list[str], path, title: str = "",
            cmap: str = "RdBu_r", centred: bool = True, notes=None) -> Path:
    """One heatmap of values (R, K) (a tensor), rows down and columns across, with a colour bar;
    `centred` puts 0 at the middle of a diverging map (patching shares, attributions); `notes`
    (R, K) strings are written in the cells (the logit lens's top tokens). 0.5 inch per cell,
    at least 5 x 3 inches."""
    values = values.detach().float().cpu()
    R, K = values.shape
    fig = new_figure(max(5.0, 1.5 + 0.5 * K), max(3.0, 1.2 + 0.4 * R))
    ax = fig.subplots()
    top = values.abs().max().item() or 1.0
    image = ax.imshow(values.numpy(), cmap=cmap, aspect="auto",
                      vmin=-top if centred else None, vmax=top if centred else None)
    fig.colorbar(image, ax=ax, fraction=0.04)
    ax.set_xticks(range(K), [token_label(c) for c in col_labels], fontsize=7, rotation=90)
    ax.set_yticks(range(R), row_labels, fontsize=7)
    if notes is not None:
        for r in range(R):
            for k in range(K):
                ax.text(k, r, token_label(notes[r][k]), ha="center", va="center", fontsize=6)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return save(fig, path)


def heads_curves(runs: dict[str, list[dict]], path, title: str = "") -> Path:
    """The `--train.track_heads` records of metrics.jsonl against step, for {label: records}
    of one run or several (one colour each): above, the best head's induction score; below,
    the loss on the repeat of random tokens (in-context, solid) and on their first copy
    (dashed), so that the score's jump and the in-context loss's fall line up; 7 x 6 inches."""
    fig = new_figure(7, 6)
    score, loss = fig.subplots(2, 1, sharex=True)
    for colour, (label, records) in enumerate(runs.items()):
        rows = [r for r in records if "induction_score" in r]
        steps = [r["step"] for r in rows]
        score.plot(steps, [r["induction_score"] for r in rows], "o-", ms=3, color=f"C{colour}",
                   label=label)
        loss.plot(steps, [r["in_context_loss"] for r in rows], "-", color=f"C{colour}",
                  label=f"{label}: on the repeat (in-context)")
        loss.plot(steps, [r["random_loss"] for r in rows], "--", color=f"C{colour}",
                  label=f"{label}: on the first copy")
    score.set_ylabel("induction score (best head)")
    score.set_ylim(0, 1)
    score.legend(fontsize=7)
    loss.set_xlabel("step")
    loss.set_ylabel("loss on random tokens (nats/token)")
    loss.legend(fontsize=7)
    score.set_title(title, fontsize=9)
    fig.tight_layout()
    return save(fig, path)
