"""Fine-tuning a trained run: every weight or LoRA adapters, and a comparison of the two."""
