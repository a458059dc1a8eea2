"""Seeing inside a model, from Python or `glassformer inspect` / `glassformer compare`:

params.py      parameters per part with closed forms     memory.py     training and KV-cache memory
shapes.py      every module's input/output shapes         capture.py    attention weights by hooks
heads.py       what each head favours, in words           positions.py  pictures of position schemes
next_token.py  the next-token distribution and filters    plots.py      the PNG figures
compare.py     recipes trained alike, and a report        recipes.py    the ready comparisons
source.py      a run directory or a preset to inspect     throughput.py training tokens/s as T grows
lens.py        the logit lens                             attribution.py direct logit attribution
patching.py    activation patching, clean -> corrupted
(on the hook points of glassformer/model/hooks.py; head detectors: glassformer/train/detectors.py)
(the commands' argument parsing is glassformer/cli/inspect.py)
"""
