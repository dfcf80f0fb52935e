"""The shared tiny models load and run."""

import torch
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer


def test_tiny_models_forward(tiny_llama_dir, tiny_gpt2_dir, tiny_qwen2_dir, tiny_bert_dir):
    tok = AutoTokenizer.from_pretrained(tiny_llama_dir)
    batch = tok(["hello how are you", "the model"], return_tensors="pt", padding=True)
    for path in (tiny_llama_dir, tiny_gpt2_dir, tiny_qwen2_dir):
        model = AutoModelForCausalLM.from_pretrained(path)
        out = model(**batch)
        assert out.logits.shape[:2] == batch["input_ids"].shape
        assert torch.isfinite(out.logits).all()
    bert = AutoModelForSequenceClassification.from_pretrained(tiny_bert_dir)
    assert bert(**batch).logits.shape == (2, 3)
