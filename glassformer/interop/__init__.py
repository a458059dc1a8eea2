"""Other libraries' formats: Hugging Face checkpoint directories in and out (hf.py), one module
per model family for its names and layouts (gpt2.py, llama.py, bert.py, bart.py), and the
renaming tables they share (keymap.py). Importing this package does not import torch."""
