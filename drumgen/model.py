"""The model: Hugging Face GPT-2 with a learned style embedding added at every position, and a
model folder (config, safetensors weights, vocabulary, styles, generation defaults)."""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn
from transformers import GPT2Config, GPT2LMHeadModel
from transformers.utils import logging as hf_logging

from . import shares as shares_mod
from .folders import (  # noqa: F401  (re-exported: their home before folders.py)
    FILES,
    GenerationDefaults,
    ModelError,
    read_defaults,
    write_defaults,
)
from .pattern import atomic_write_bytes
from .tokenizer import TokenError, Tokenizer

#: name -> (layers, width, heads, positions). `small` was chosen by measurement: see
#: bench/generate.py and the model card. `seed` is the original design's size.
PRESETS: dict[str, tuple[int, int, int, int]] = {
    "debug": (2, 64, 2, 512),
    "small": (4, 256, 4, 512),
    "seed": (12, 768, 12, 2048),
}
STYLE_DIM = 128
hf_logging.disable_progress_bar()  # no "Writing model shards" bars in every checkpoint



class DrumGPTConfig(GPT2Config):
    model_type = "drumgen_gpt2"

    def __init__(self, n_styles: int = 18, style_dim: int = STYLE_DIM,
                 centre_styles: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.n_styles = n_styles
        self.style_dim = style_dim
        #: the style rows whose mean is the centre style strength measures from: the styles
        #: the model was first trained on (None: all), so adding styles moves no old one
        self.centre_styles = centre_styles


class DrumGPT(GPT2LMHeadModel):
    """GPT-2 whose input at every position is token + position + style embedding.

    The style enters through `style_ids` on every forward call rather than through
    `inputs_embeds`, because `generate()` uses `inputs_embeds` on its first step only."""

    config_class = DrumGPTConfig

    def __init__(self, config: DrumGPTConfig):
        super().__init__(config)
        self.style_emb = nn.Embedding(config.n_styles, config.style_dim)
        self.style_proj = nn.Linear(config.style_dim, config.n_embd, bias=False)
        self.post_init()

    def forward(self, input_ids=None, style_ids=None, inputs_embeds=None,
                style_strength: float = 1.0, **kwargs):
        if inputs_embeds is None:
            inputs_embeds = self.transformer.wte(input_ids)
        if style_ids is not None:
            style = self.style_vector(style_ids, style_strength)
            inputs_embeds = inputs_embeds + style[:, None, :].to(inputs_embeds.dtype)
        return super().forward(inputs_embeds=inputs_embeds, **kwargs)

    def style_vector(self, style_ids: torch.Tensor, strength: float = 1.0) -> torch.Tensor:
        """The vector added at every position for `style_ids` (one per row).

        `strength` scales the style's distance from the centre of the styles (those the
        model was first trained on, `centre_styles`; added ones do not move it): 1 is the style
        as trained, 0 the centre (no particular style), and above 1 the style with its
        differences from the others exaggerated. Generation uses it as a guidance knob that
        costs nothing per step; evaluate measures what it does (see the model card)."""
        vector = self.style_proj(self.style_emb(style_ids))
        if strength != 1.0:
            centre = self.style_proj(
                self.style_emb.weight[: self.config.centre_styles].mean(0))
            vector = centre + strength * (vector - centre)
        return vector

    def add_styles(self, count: int) -> None:
        """Append `count` style rows, each starting at the mean of the existing rows, so a new
        style begins as 'an average groove' rather than noise."""
        old = self.style_emb.weight.data
        if self.config.centre_styles is None:  # the centre stays the base styles'
            self.config.centre_styles = old.shape[0]
        new = nn.Embedding(old.shape[0] + count, old.shape[1]).to(old.device, old.dtype)
        new.weight.data[: old.shape[0]] = old
        new.weight.data[old.shape[0]:] = old.mean(0, keepdim=True)
        self.style_emb = new
        self.config.n_styles = old.shape[0] + count


def build(preset: str, vocab_size: int, n_styles: int) -> DrumGPT:
    if preset not in PRESETS:
        raise ValueError(f"preset must be one of {', '.join(PRESETS)}; got {preset!r}")
    layers, width, heads, positions = PRESETS[preset]
    config = DrumGPTConfig(
        n_styles=n_styles, vocab_size=vocab_size, n_positions=positions, n_embd=width,
        n_layer=layers, n_head=heads, bos_token_id=1, eos_token_id=2, pad_token_id=0,
        resid_pdrop=0.1, embd_pdrop=0.1, attn_pdrop=0.1)
    return DrumGPT(config)


@dataclass
class Bundle:
    """Everything a model folder holds, loaded."""

    model: DrumGPT
    tokenizer: Tokenizer
    styles: list[str]
    defaults: GenerationDefaults
    path: Path | None = None
    #: per style, the drum-share biases (`shares.py`, `shares.json`); none: the model as it is
    shares: dict[str, dict[str, list[float]]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._bias: dict[str, torch.Tensor | None] = {}

    def set_shares(self, shares: dict[str, dict[str, list[float]]]) -> None:
        self.shares, self._bias = dict(shares), {}

    def logit_bias(self, style: str) -> torch.Tensor | None:
        """`style`'s drum-share biases (`shares.bias_table`: a row per step of the bar, each
        over the vocabulary), or None where it has none."""
        if style not in self._bias:
            entry = self.shares.get(style)
            self._bias[style] = None if entry is None else shares_mod.bias_table(
                self.tokenizer, entry).to(self.model.device)
        return self._bias[style]

    def style_index(self, name: str) -> int:
        key = name.strip().lower()
        if key not in self.styles:
            raise ValueError(f"unknown style {name!r}; this model knows: {', '.join(self.styles)}")
        return self.styles.index(key)


def save(bundle: Bundle, folder: str | os.PathLike) -> Path:
    """Write a model folder. Each file is written atomically; weights are safetensors."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / ".saving"
    shutil.rmtree(tmp, ignore_errors=True)
    bundle.model.save_pretrained(tmp, safe_serialization=True)
    for name in ("config.json", "model.safetensors"):
        os.chmod(tmp / name, 0o644)  # transformers writes the weights 0600
        os.replace(tmp / name, folder / name)
    shutil.rmtree(tmp, ignore_errors=True)
    bundle.tokenizer.save(folder)
    atomic_write_bytes(folder / "styles.json", json.dumps(bundle.styles).encode())
    write_defaults(folder, bundle.defaults)
    if bundle.shares:
        shares_mod.write(folder, bundle.shares, {})
    else:  # a model trained into an old folder must not play with the old model's biases
        (folder / shares_mod.SHARES_FILE).unlink(missing_ok=True)
    return folder


def load(folder: str | os.PathLike, device: str | torch.device = "cpu",
         dtype: torch.dtype | None = None) -> Bundle:
    """Load a model folder; raises `ModelError` naming the missing or broken file."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ModelError(f"no model folder at {folder}")
    missing = [f for f in FILES if not (folder / f).is_file()]
    if missing:
        raise ModelError(f"{folder}: missing {', '.join(missing)}")
    defaults = read_defaults(folder)
    try:
        tokenizer = Tokenizer.load(folder)
        styles = json.loads((folder / "styles.json").read_text())
        shares = shares_mod.read(folder)
    except TokenError as exc:  # saved with other tokenizer settings
        raise ModelError(f"{folder}: {exc}") from None
    except (ValueError, TypeError) as exc:
        raise ModelError(f"{folder}: a JSON file is corrupt ({exc})") from None
    try:
        model = DrumGPT.from_pretrained(folder, use_safetensors=True, dtype=dtype or torch.float32)
    except Exception as exc:  # safetensors, JSON and shape errors all land here
        raise ModelError(f"{folder}: cannot load the weights ({type(exc).__name__}: "
                         f"{str(exc)[:300]})") from None
    if model.config.n_styles != len(styles) or model.config.vocab_size != len(tokenizer):
        raise ModelError(f"{folder}: styles.json or vocab.json does not match the weights")
    model.to(device).eval()
    styles = [s.lower() for s in styles]
    unknown = sorted(set(shares) - set(styles))
    if unknown:
        raise ModelError(f"{folder}: {shares_mod.SHARES_FILE} has biases for styles the model "
                         f"does not know: {', '.join(unknown)}")
    return Bundle(model, tokenizer, styles, defaults, folder, shares)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
