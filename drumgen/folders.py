"""What a model folder holds, as far as reading it needs no torch: its file names, its saved
generation defaults, and the error a broken folder raises. `drumgen.model` loads the weights
(and re-exports these); the app reads these while it builds its page, before torch is imported."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .pattern import atomic_write_bytes

MODELS_DIR = Path(__file__).resolve().parent.parent / "models"
DEFAULT_MODEL = MODELS_DIR / "drumgen-small"
FILES = ("config.json", "model.safetensors", "vocab.json", "styles.json", "generation.json")


class ModelError(RuntimeError):
    """A model folder that cannot be loaded; the message says which file and why."""


@dataclass
class GenerationDefaults:
    """Sampling settings saved with a model (`generation.json`); the app and CLI start from
    these.

    Not `transformers.GenerationConfig`, on purpose: drumgen never calls `generate()` (its own
    grammar-masked loop samples, `sampling.sample`), its main setting, `style_strength`, is no
    GenerationConfig field, and GenerationConfig would also save and validate dozens of
    settings this decoder ignores (beams, penalties, `do_sample`), which would read as if they
    applied."""

    temperature: float = 0.95
    top_k: int = 0
    top_p: float = 0.95
    style_strength: float = 1.0  # see `DrumGPT.style_vector`; older folders lack it: 1.0
    #: per style, the strength that style plays at instead of `style_strength`, as chosen by
    #: `drumgen calibrate` (evaluate.calibrate_strengths); older folders lack it: none
    style_strengths: dict[str, float] = field(default_factory=dict)
    extra: dict = field(default_factory=dict)

    def strength_for(self, style: str) -> float:
        """The style strength `style` (a model style, not a preset) plays at by default."""
        return self.style_strengths.get(style, self.style_strength)


def write_defaults(folder: str | os.PathLike, defaults: GenerationDefaults) -> None:
    atomic_write_bytes(Path(folder) / "generation.json", json.dumps(asdict(defaults)).encode())


def read_defaults(folder: str | os.PathLike) -> GenerationDefaults:
    """A model folder's generation defaults, without loading the model."""
    path = Path(folder) / "generation.json"
    try:
        return GenerationDefaults(**json.loads(path.read_text()))
    except OSError as exc:
        raise ModelError(f"{folder}: cannot read generation.json ({exc.strerror})") from None
    except (ValueError, TypeError) as exc:
        raise ModelError(f"{folder}: generation.json is corrupt ({exc})") from None
