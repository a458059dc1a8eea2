"""`model.save_pretrained(path)`: every family writes the Hugging Face format its architecture
maps to (GPT-2 or Llama, BERT, BART), through glassformer/interop/hf.py."""


class SavePretrained:
    def save_pretrained(self, path, tokenizer=None) -> None:
        """Write a Hugging Face checkpoint directory (config.json + model.safetensors, and
        tokenizer.json when `tokenizer` is a Hugging Face one) that `transformers` loads."""
        from glassformer.interop.hf import save_pretrained

        save_pretrained(self, path, tokenizer)
