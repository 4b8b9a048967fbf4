"""Sources + label choice → the build plan: the requests to fetch, the unusable source rows, the
vocabulary and a record of how the clips were chosen (for ``dataset.json``).

    manifest CSVs ─┐
    events CSVs   ─┤
    subtitle dirs ─┤
    segment CSVs  ─┼─► parse ─► (labels given?) select_clips ─► BuildPlan
    strong TSVs   ─┘

Without chosen labels, every parsed request is kept and the vocabulary is every label they carry
(a manifest build). With chosen labels (display names or mids), selection picks a balanced,
seeded subset (:func:`~sound_captions.sources.select.select_clips`); the vocabulary is the
chosen labels, and a clip's shard labels are the chosen labels present on it (its
``selected_labels``, rolled up to the chosen class with ``include_descendants``), so training
targets match the vocabulary. AudioSet lists hold millions of clips: a build from them requires
chosen labels.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from sound_captions import reasons
from sound_captions.ontology import Ontology
from sound_captions.sources.audioset import read_audioset_segments, read_audioset_strong
from sound_captions.sources.events import read_events
from sound_captions.sources.manifest import read_manifest
from sound_captions.sources.subtitles import DescriptionMapper, read_subtitle_library
from sound_captions.sources.requests import ClipRequest, SourceFailure
from sound_captions.sources.select import resolve_labels, select_clips, selection_counts

LABEL_POLICY = (
    "shard labels are the chosen labels present on each clip (selected_labels; with "
    "include_descendants a descendant label counts as its chosen ancestor); explicit negatives "
    "carry no label; the clips' other AudioSet labels are not kept"
)


class PlanError(ValueError):
    """The sources and options do not make a build (e.g. AudioSet lists without chosen labels)."""


@dataclass
class BuildPlan:
    requests: list[ClipRequest]
    failures: list[SourceFailure]
    vocabulary: dict[str, str] | None  # None: every label the requests carry
    sources: list[str]
    selection: dict = field(default_factory=dict)
    subtitles: list[dict] = field(default_factory=list)  # per --subtitles root: what was read and mapped

    @property
    def label_sources(self) -> dict:
        """How per-second labels were read, for ``dataset.json`` (``labels_per_second``)."""
        return {"subtitles": self.subtitles} if self.subtitles else {}


def plan_build(
    *,
    manifests: Sequence[str] = (),
    audioset_csvs: Sequence[str] = (),
    audioset_strong: Sequence[str] = (),
    events: Sequence[str] = (),
    subtitles: Sequence[str] = (),
    subtitle_map: str | None = None,
    allow_overlapping_cues: bool = False,
    labels: Sequence[str] = (),
    include_descendants: bool = False,
    per_label_cap: int | None = None,
    negatives: float = 0.0,
    seed: int = 0,
    ontology: Ontology | None = None,
) -> BuildPlan:
    """Read every source and choose the clips (see the module docstring)."""
    ontology = ontology or Ontology.load()
    requests: list[ClipRequest] = []
    failures: list[SourceFailure] = []
    for uri in manifests:
        r, f = read_manifest(uri, ontology)
        requests += r
        failures += f
    for uri in events:
        r, f = read_events(uri, ontology)
        requests += r
        failures += f
    subtitle_reports = []
    if subtitles:
        mapper = DescriptionMapper.load(ontology, subtitle_map)
        for uri in subtitles:
            library = read_subtitle_library(uri, ontology, allow_overlaps=allow_overlapping_cues, mapper=mapper)
            requests += library.requests
            failures += library.failures
            subtitle_reports.append(library.report)
    known = set(ontology.classes)
    for uri in audioset_csvs:
        r, f = read_audioset_segments(uri, known_labels=known)
        requests += r
        failures += f
    for uri in audioset_strong:
        r, f = read_audioset_strong(uri, known_labels=known)
        requests += r
        failures += f
    sources = [*manifests, *events, *subtitles, *audioset_csvs, *audioset_strong]
    # one clip may be listed by several sources (a strong clip and its weak row share the id)
    unique: dict[str, ClipRequest] = {}
    for r in requests:
        if r.clip_id in unique:
            kept = unique[r.clip_id]
            if r.events and not kept.events:  # event times beat clip labels (a strong clip and its weak row)
                unique[r.clip_id], r = r, kept
            failures.append(SourceFailure(f"{r.origin}: {r.clip_id}", reasons.DUPLICATE, f"clip {r.clip_id} listed again"))
            continue
        unique[r.clip_id] = r
    requests = list(unique.values())
    if not labels:
        if audioset_csvs or audioset_strong:
            raise PlanError("an AudioSet build needs the labels to mine (--labels)")
        return BuildPlan(requests, failures, None, sources, subtitles=subtitle_reports)
    chosen = resolve_labels(ontology, labels, include_descendants=include_descendants)
    selected = select_clips(
        requests, ontology, labels, include_descendants=include_descendants,
        per_label_cap=per_label_cap, negatives_share=negatives, seed=seed,
    )  # fmt: skip
    vocabulary = {mid: ontology.name(mid) for mid in chosen}
    selection = {
        "labels": list(chosen),
        "include_descendants": include_descendants,
        "per_label_cap": per_label_cap,
        "negatives": negatives,
        "seed": seed,
        "candidates": len(requests),
        "selected": len(selected),
        "selected_per_label": selection_counts(selected),
        "label_policy": LABEL_POLICY,
    }
    return BuildPlan(selected, failures, vocabulary, sources, selection, subtitle_reports)

