"""Zero-shot label checks with a CLAP model (Microsoft's ``msclap``) loaded from a local file.

The model scores how well each clip, and each second of it, matches a text prompt made from
every label's display name ("this is a sound of dog"), independently of the dataset's own
labels and of the fold models: a second opinion shown beside the out-of-fold scores.

Nothing is downloaded. The weights are the file the user names (``CLAP_weights_2023.pth`` or
``_2022``); the text encoder's architecture is the version's (GPT-2 for 2023, BERT for 2022)
and its weights come from that file too; only its tokenizer (and config) must be on this
machine: a folder the user names (``--clap-text``), or Hugging Face's local cache.

Audio follows msclap's own rules (``CLAPWrapper``): mono at the model's sample rate (44.1 kHz),
a piece shorter than the model's duration (7 s or 5 s) repeated to fill it. A clip longer than
that is scored as the mean of its consecutive pieces (msclap takes one random piece); a second
is scored on its own, repeated. Similarity is the model's scaled cosine; the probabilities are
its softmax over the dataset's labels (msclap's zero-shot classification).

msclap pins numpy < 2, so it is the optional ``[clap]`` extra, which also caps pyarrow at the
last release that runs on numpy 1.x.
"""

from __future__ import annotations

import hashlib
import logging
import os
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

log = logging.getLogger(__name__)

VERSIONS = ("2022", "2023")
PROMPT = "this is a sound of {}"
#: buffers that transformers versions keep or drop from a state dict (not weights)
_OPTIONAL_KEYS = (".attn.bias", ".attn.masked_bias", "position_ids")


class ClapMissingError(ImportError):
    """The optional clap extra is not installed."""


class ClapModelError(ValueError):
    """The named CLAP file (or its text model) is missing, unreadable or not a CLAP model."""


def require_msclap():
    """msclap's model module; :class:`ClapMissingError` where the extra is not installed."""
    try:
        import msclap.models.clap as msclap_models
    except ImportError as exc:
        raise ClapMissingError(f"--clap needs msclap ({exc}): pip install 'sound-captions[clap]'") from exc
    return msclap_models


def version_config(version: str) -> dict:
    """The settings msclap ships for ``version`` (its ``configs/config_<version>.yml``)."""
    import importlib.resources

    import yaml

    if version not in VERSIONS:
        raise ClapModelError(f"CLAP version must be one of {', '.join(VERSIONS)}, got {version!r}")
    require_msclap()
    return yaml.safe_load((importlib.resources.files("msclap") / "configs" / f"config_{version}.yml").read_text())


def _text_parts(args: dict, text_dir: str | None):
    """(tokenizer, text config) from ``text_dir``, else from Hugging Face's local cache."""
    from transformers import AutoConfig, AutoTokenizer

    where = text_dir or args["text_model"]
    try:
        tokenizer = AutoTokenizer.from_pretrained(where, local_files_only=True)
        config = AutoConfig.from_pretrained(where, local_files_only=True)
    except (OSError, ValueError) as exc:
        hint = (
            f"{text_dir!r} has no usable tokenizer and config.json" if text_dir else
            f"the tokenizer of {args['text_model']!r} is not in this machine's Hugging Face cache; pass --clap-text DIR, "
            f"a folder with its tokenizer files and config.json (e.g. huggingface-cli download {args['text_model']} --exclude '*.safetensors' '*.bin' '*.h5' '*.msgpack')"
        )  # fmt: skip
        raise ClapModelError(f"CLAP text model: {hint} ({str(exc).splitlines()[0][:200]})") from exc
    width = getattr(config, "hidden_size", None) or getattr(config, "n_embd", None)
    if width != args["transformer_embed_dim"]:
        raise ClapModelError(f"CLAP text model {where!r} is {width} wide; CLAP {args['text_model']} needs {args['transformer_embed_dim']}")
    if "gpt" in args["text_model"]:
        tokenizer.add_special_tokens({"pad_token": "!"})  # as msclap does: '!' is id 0, its end-of-text search relies on it
    return tokenizer, config


@contextmanager
def _text_model_from(config):
    """msclap's TextEncoder fetches its base with ``AutoModel.from_pretrained(name)`` (a
    download); make it build the same architecture from ``config`` instead: the weights then
    come from the CLAP file."""
    import msclap.models.clap as msclap_models
    from transformers import AutoModel

    class _FromConfig:
        @staticmethod
        def from_pretrained(_name):
            return AutoModel.from_config(config)

    real = msclap_models.AutoModel
    msclap_models.AutoModel = _FromConfig
    try:
        yield
    finally:
        msclap_models.AutoModel = real


def build_clap(args: dict, text_config):
    """msclap's CLAP of the version ``args`` describe, randomly initialised, its text encoder
    built from ``text_config``."""
    with _text_model_from(text_config):
        return require_msclap().CLAP(
            audioenc_name=args["audioenc_name"], sample_rate=args["sampling_rate"], window_size=args["window_size"], hop_size=args["hop_size"],
            mel_bins=args["mel_bins"], fmin=args["fmin"], fmax=args["fmax"], classes_num=args["num_classes"], out_emb=args["out_emb"],
            text_model=args["text_model"], transformer_embed_dim=args["transformer_embed_dim"], d_proj=args["d_proj"],
        )  # fmt: skip


def _state_dict(path: str) -> dict:
    import pickle

    import torch

    try:
        try:
            blob = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as exc:
            if "Weights only load failed" not in str(exc):
                raise
            log.warning("%s holds more than tensors; loading it as a full pickle (only do this with a file you trust)", path)
            blob = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # noqa: BLE001 - truncated zip, not a torch file, a pickle of missing classes, ...
        raise ClapModelError(f"CLAP file {path} cannot be read as a torch file: {str(exc).splitlines()[0][:200]}") from exc
    state = blob.get("model", blob) if isinstance(blob, dict) else None
    if not isinstance(state, dict) or not all(hasattr(v, "shape") for v in state.values()):
        raise ClapModelError(f"CLAP file {path} holds no model weights (expected msclap's {{'model': state_dict}})")
    return {k.removeprefix("module."): v for k, v in state.items()}


@dataclass
class ClapModel:
    """A loaded CLAP model and what scoring with it needs."""

    model: object  # msclap.models.clap.CLAP, in eval mode
    tokenizer: object
    args: dict
    version: str
    path: str
    sha256: str

    @property
    def sample_rate(self) -> int:
        return int(self.args["sampling_rate"])

    @property
    def duration_s(self) -> int:
        return int(self.args["duration"])

    def describe(self) -> dict:
        return {"weights": self.path, "sha256": self.sha256, "version": self.version, "prompt": PROMPT,
                "sample_rate_hz": self.sample_rate, "duration_s": self.duration_s}  # fmt: skip

    def text_embeddings(self, texts: list[str]):
        """Text → (n, d) embeddings, tokenized as msclap does."""
        import torch

        keys = ["input_ids", "attention_mask"] if any(t in self.args["text_model"] for t in ("gpt", "roberta", "clip")) else ["input_ids", "token_type_ids", "attention_mask"]
        if "gpt" in self.args["text_model"]:
            texts = [t + " <|endoftext|>" for t in texts]
        tokens = self.tokenizer(texts, add_special_tokens=True, max_length=self.args["text_len"], padding="max_length", truncation=True, return_tensors="pt")
        with torch.inference_mode():
            return self.model.caption_encoder({k: tokens[k] for k in keys})

    def audio_embeddings(self, pieces, batch: int = 8):
        """Pieces of audio at the model's rate, each repeated to the model's duration → (n, d)
        embeddings."""
        import torch

        out = []
        with torch.inference_mode():
            for i in range(0, len(pieces), batch):
                filled = np.stack([fill(p, self.sample_rate * self.duration_s) for p in pieces[i : i + batch]])
                out.append(self.model.audio_encoder(torch.from_numpy(filled))[0])
        return torch.cat(out) if out else torch.zeros((0, self.args["d_proj"]))

    def similarity(self, audio, text) -> np.ndarray:
        """msclap's ``compute_similarity``: logit scale × cosine, (n_audio, n_text)."""
        import torch

        audio = audio / torch.norm(audio, dim=-1, keepdim=True)
        text = text / torch.norm(text, dim=-1, keepdim=True)
        with torch.inference_mode():
            return (self.model.logit_scale.exp() * audio @ text.T).numpy()


def fill(piece: np.ndarray, samples: int) -> np.ndarray:
    """msclap's padding: a piece shorter than ``samples`` repeated to fill it; longer, cut."""
    piece = np.asarray(piece, dtype=np.float32).reshape(-1)
    if piece.size == 0:
        piece = np.zeros(1, np.float32)
    if piece.size < samples:
        piece = np.tile(piece, int(np.ceil(samples / piece.size)))
    return piece[:samples]


def load_clap(path: str, text_dir: str | None = None, version: str = "2023") -> ClapModel:
    """The CLAP model in ``path`` (msclap's ``{'model': state_dict}``); every weight of the
    version's architecture must be there with its shape (msclap itself loads with
    ``strict=False``, which turns a wrong file into a silently random model)."""
    if not os.path.isfile(path):
        raise ClapModelError(f"CLAP file {path} does not exist")
    args = version_config(version)
    tokenizer, text_config = _text_parts(args, text_dir)
    model = build_clap(args, text_config)
    state = _state_dict(path)
    expected = model.state_dict()
    missing = [k for k in expected if k not in state and not k.endswith(_OPTIONAL_KEYS)]
    wrong = [k for k, v in state.items() if k in expected and tuple(v.shape) != tuple(expected[k].shape)]
    if missing or wrong:
        problem = f"{len(missing)} weights missing (e.g. {', '.join(missing[:3])})" if missing else f"{len(wrong)} weights of another shape (e.g. {wrong[0]})"
        raise ClapModelError(f"CLAP file {path} is not a CLAP {version} model ({args['audioenc_name']} + {args['text_model']}) with this text model: {problem}")
    model.load_state_dict({k: v for k, v in state.items() if k in expected}, strict=False)
    model.eval()
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return ClapModel(model=model, tokenizer=tokenizer, args=args, version=version, path=os.path.abspath(path), sha256=digest.hexdigest())


@dataclass
class ClapClip:
    """One clip's zero-shot scores: ``probability`` (L,) of the whole clip and ``per_second``
    (n_seconds, L), both softmax over the labels; ``problem``: why it could not be scored
    (then both are None)."""

    probability: np.ndarray | None
    per_second: np.ndarray | None
    problem: str = ""


def _softmax(x: np.ndarray) -> np.ndarray:
    x = x - x.max(axis=-1, keepdims=True)
    e = np.exp(x)
    return e / e.sum(axis=-1, keepdims=True)


def score_audio(clap: ClapModel, samples: np.ndarray, n_seconds: int, text) -> ClapClip:
    """One clip's samples (at the model's rate) → its :class:`ClapClip` against ``text`` embeddings."""
    rate = clap.sample_rate
    seconds = np.stack([fill(samples[k * rate : (k + 1) * rate], rate) for k in range(n_seconds)])
    piece = rate * clap.duration_s
    pieces = [samples[i : i + piece] for i in range(0, len(samples), piece)] or [samples]
    if len(pieces) > 1 and len(pieces[-1]) < rate:  # a last scrap under a second would be repeated many times
        pieces.pop()
    audio = clap.audio_embeddings(pieces)
    clip_sim = clap.similarity(audio, text).mean(axis=0)
    return ClapClip(probability=_softmax(clip_sim), per_second=_softmax(clap.similarity(clap.audio_embeddings(seconds), text)))


def score_clips(clap: ClapModel, clips, labels: list[str], names: dict[str, str], progress=log.info) -> dict[str, ClapClip]:
    """clip id → :class:`ClapClip` for ``clips`` (anything with ``clip_id``, ``source``,
    ``start_s``, ``n_seconds``), prompts from ``labels``' display names. A clip whose source
    cannot be decoded here (e.g. a YouTube id) gets its reason instead of scores."""
    from sound_captions.audio import decode_audio

    text = clap.text_embeddings([PROMPT.format(names.get(m, m).lower()) for m in labels])
    out: dict[str, ClapClip] = {}
    for i, clip in enumerate(clips, start=1):
        try:
            samples = decode_audio(clip.source, clip.start_s, clip.start_s + clip.n_seconds, sample_rate_hz=clap.sample_rate)
        except Exception as exc:  # noqa: BLE001 - recorded per clip; the rest are scored
            out[clip.clip_id] = ClapClip(None, None, (str(exc).splitlines() or [type(exc).__name__])[-1][:300])
            continue
        out[clip.clip_id] = score_audio(clap, samples, clip.n_seconds, text)
        if i % 50 == 0:
            progress(f"CLAP: {i}/{len(clips)} clips scored")
    return out


def clip_columns(scored: ClapClip | None, given: tuple[str, ...], labels: list[str], names: dict[str, str]) -> dict[str, str]:
    """The CLAP columns of one clip's row in ``suspicions.csv`` (all blank without CLAP):
    ``clap_given``, the lowest CLAP probability among its given labels; ``clap_ranks``, each
    given label's rank among the dataset's labels (1 = CLAP's first choice); ``clap_top``, CLAP's
    three most likely labels; ``clap_problem``, why the clip could not be scored."""
    if scored is None:
        return dict.fromkeys(CLIP_COLUMNS, "")
    if scored.probability is None:
        return {**dict.fromkeys(CLIP_COLUMNS, ""), "clap_problem": scored.problem}
    order = list(np.argsort(-scored.probability, kind="stable"))
    index = {m: j for j, m in enumerate(labels)}
    given_p = [float(scored.probability[index[m]]) for m in given if m in index]
    return {
        "clap_given": f"{min(given_p):.4f}" if given_p else "",
        "clap_ranks": ";".join(f"{names.get(m, m)}:{order.index(index[m]) + 1}" for m in given if m in index),
        "clap_top": ";".join(f"{names.get(labels[j], labels[j])} {scored.probability[j]:.3f}" for j in order[:3]),
        "clap_problem": "",
    }


CLIP_COLUMNS = ("clap_given", "clap_ranks", "clap_top", "clap_problem")
