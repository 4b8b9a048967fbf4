"""A caption run's settings (``CaptionOptions``): the CLI's ``caption`` options and the
``jobs/`` caption configs are made from these fields (see ``cli_options.py``)."""

from __future__ import annotations

from dataclasses import dataclass, field

from sound_captions.caption.fetch import FetchOptions
from sound_captions.caption.postprocess import PostprocessConfig


@dataclass(frozen=True)
class CaptionOptions:
    """A caption run's settings (the same keys on the CLI and in ``jobs/`` configs).

    Attributes:
        out: output folder (local or ``s3://``); mirrors the inputs' layout.
        model: model bundle URI.
        force: caption again even when the outputs are up to date.
        chunk_s: seconds of audio a decode worker reads from ffmpeg at a time.
        decode_cpus: CPUs of one decode task (ffmpeg + one chunk + one output block).
        decode_memory_mb: memory (MiB) Ray reserves for one decode task.
        feature_cpus: CPUs of one spectrogram task (its torch threads). Spectrogram tasks run
            only with a GPU actor; on CPU the inference actor computes the spectrograms on its
            own threads, and these CPUs are left to further decode tasks.
        feature_memory_mb: memory (MiB) Ray reserves for one spectrogram task (GPU runs).
        feature_batch_size: windows per spectrogram batch (GPU runs).
        inference_batch_size: windows per batch of the inference actor (a GPU runs it in one
            forward pass).
        cpu_forward_batch: windows per forward pass on CPU: the actor runs each batch in
            passes of this many, whose activations stay in the CPU's caches (the same scores;
            1.6-1.8x the baseline's windows/s on 2 threads against one pass of 256).
        inference_actors: upper size of the inference actor pool.
        cpus_per_actor: CPUs of one inference actor (its torch threads on CPU). Unset: what the
            cluster has beside one decode and one spectrogram task, at most one node's CPUs
            and 8; 1 with a GPU (see ``pipeline.inference_cpus``).
        gpus_per_actor: GPUs of one inference actor (Ray's ``num_gpus``; 0: CPU inference).
        postprocess: smoothing and cue rules.
        vocabulary: CSV replacing the bundle's caption texts.
        ffmpeg: ffmpeg binary (default: imageio-ffmpeg's).
        fetch: yt-dlp settings for URL inputs.
        merge_with_speech: folder of speech subtitles; writes ``<rel>.sdh.vtt`` where one exists.
        max_block_mb: Ray Data block size for this run (bounds what a worker buffers).
        object_store_limit_mb: cap on the object store memory this run's stages may fill.
    """

    out: str
    model: str
    force: bool = False
    chunk_s: int = 60
    decode_cpus: float = 1.0
    decode_memory_mb: int = 512
    feature_cpus: float = 1.0
    feature_memory_mb: int = 640
    feature_batch_size: int = 64
    inference_batch_size: int = 256
    cpu_forward_batch: int = 8
    inference_actors: int = 1
    cpus_per_actor: float | None = None
    gpus_per_actor: float = 0.0
    postprocess: PostprocessConfig = field(default_factory=PostprocessConfig)
    vocabulary: str | None = None
    ffmpeg: str | None = None
    fetch: FetchOptions = field(default_factory=FetchOptions)
    max_block_mb: int = 16
    object_store_limit_mb: int | None = None
    merge_with_speech: str | None = None

    def __post_init__(self) -> None:
        if not self.chunk_s > 0:
            raise ValueError(f"chunk_s must be positive, not {self.chunk_s}")
        for name in ("feature_batch_size", "inference_batch_size", "cpu_forward_batch", "inference_actors", "max_block_mb"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, not {getattr(self, name)}")
