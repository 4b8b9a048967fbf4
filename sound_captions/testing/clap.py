"""A randomly initialised CLAP of the real architecture (msclap's 2023: HTSAT audio encoder,
GPT-2 text encoder), saved the way msclap's weights are, for tests of the ``--clap`` plumbing:
shapes, loading and outputs, not quality. The text encoder has one layer (of the real width)
and a byte-level tokenizer with no merges, so that the file stays small and nothing is
downloaded. Needs the clap extra."""

from __future__ import annotations

import json
import os


def make_random_clap(folder: str, seed: int = 0) -> tuple[str, str]:
    """Write ``folder/clap.pth`` and the text model folder ``folder/text``; returns both paths."""
    import torch
    from transformers import GPT2Config
    from transformers.models.gpt2.tokenization_gpt2 import bytes_to_unicode

    from sound_captions.clean.clap import build_clap, version_config

    text_dir = os.path.join(folder, "text")
    os.makedirs(text_dir, exist_ok=True)
    vocab = {c: i for i, c in enumerate(bytes_to_unicode().values())}  # GPT-2's order: '!' is id 0
    vocab["<|endoftext|>"] = len(vocab)
    with open(os.path.join(text_dir, "vocab.json"), "w", encoding="utf-8") as handle:
        json.dump(vocab, handle)
    with open(os.path.join(text_dir, "merges.txt"), "w", encoding="utf-8") as handle:
        handle.write("#version: 0.2\n")
    args = version_config("2023")
    end = vocab["<|endoftext|>"]
    config = GPT2Config(vocab_size=len(vocab), n_positions=args["text_len"] + 3, n_embd=args["transformer_embed_dim"], n_layer=1, n_head=12, bos_token_id=end, eos_token_id=end)
    config.save_pretrained(text_dir)
    torch.manual_seed(seed)
    model = build_clap(args, config)
    weights = os.path.join(folder, "clap.pth")
    torch.save({"model": model.state_dict()}, weights)
    return weights, text_dir
