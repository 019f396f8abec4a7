"""The built IR used as applications use it: `invoke verify` (real recordings through TensorFlow and the IR,
compared and decoded) and `invoke transcribe` (one WAV in the target's app image)."""
from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from ds2ir import atomic
from ds2ir.errors import AudioError, ContainerError, DecoderError, VerificationError
from ds2ir.host.build import Builder
from ds2ir.host.recordings import prepare_recordings
from ds2ir.paths import regular_file


def verify(builder: Builder, recordings: Sequence[Path], precision: str) -> Path:
    """Stream real recordings through TF (freeze image) and the IR (the target's app image, the runtime an
    application deploys, as `transcribe` uses), compare and decode; return the report."""
    builder.build()
    builder.add_image("app", builder.target.application_image)
    with builder.exclusive():
        prepare_recordings(recordings, builder.layout.verify_dir / "inputs", builder.target.architecture)
        builder.run_stage("verify-tf", "freeze")
        builder.run_stage("verify-ir", "app", "--precision", precision)
    return builder.layout.verify_dir / "report.json"


def transcribe(builder: Builder, recording: Path, *, device: str, precision: str, scorer: Optional[Path] = None,
               beam_width: Optional[int] = None, lm_alpha: Optional[float] = None,
               lm_beta: Optional[float] = None) -> str:
    """Run the IR on one WAV as an application would, in the target's app image; return what it printed.

    Greedy decoding, or beam search with ``beam_width`` and/or a ``scorer``. The options and
    the scorer file are checked here first, so a mistake fails before any container starts.
    """
    from ds2ir.model import decode
    from ds2ir.model import scorer as scorers

    target = builder.target
    decode.check_options(scorer=scorer, beam_width=beam_width, lm_alpha=lm_alpha, lm_beta=lm_beta)
    regular_file(recording, "audio file", error=AudioError)  # a FIFO or directory fails here, not in the container
    spec = target.application_image
    if (scorer or beam_width) and "ds-ctcdecoder==" not in (builder.project.root / spec.lock).read_text():
        raise DecoderError(f"Beam search needs ds_ctcdecoder, but target '{target.name}' transcribes in image "
                           f"'{spec.name}', whose lock {spec.lock} does not install it. Set the target's app_image "
                           f"in targets.toml to an image that does (app-ov2025.3), or drop --scorer/--beam-width.")
    if scorer:
        scorers.inspect(scorer)
    builder.build()
    builder.add_image("app", spec)
    inside = f"/input/{recording.name}"
    mounts = {recording: inside}
    extra = ["--audio", inside, "--device", device, "--precision", precision]
    if scorer:
        mounts[scorer] = f"/input/scorer/{scorer.name}"
        extra += ["--scorer", mounts[scorer]]
    extra += ["--beam-width", str(beam_width)] if beam_width else []
    if lm_alpha is not None and lm_beta is not None:
        extra += ["--lm-alpha", repr(lm_alpha), "--lm-beta", repr(lm_beta)]
    return builder.run_stage("transcribe", "app", *extra, read_only=mounts, capture=True)


def verify_variants(builders: Sequence[Builder], recordings: Sequence[Path], precision: str) -> Path:
    """Verify a target and each of its variants on the same recordings, then put their errors and
    transcripts side by side in the first one's ``verify/variants.{json,md}``; return the markdown.

    A variant that fails is recorded and the others still run; the failure is raised at the end.
    """
    from ds2ir.model.verify import render_variant_comparison, variant_comparison

    reports: Dict[str, Dict[str, object]] = {}
    failures: List[str] = []
    for builder in builders:
        report = builder.layout.verify_dir / "report.json"
        with contextlib.suppress(FileNotFoundError):
            report.unlink()  # so that a report found after a failure is this run's
        try:
            verify(builder, recordings, precision)
        except ContainerError:  # verify-ir exits non-zero when the IR does not match, after writing its report
            if not report.is_file():
                raise
            failures.append(f"{builder.target.label} ({report})")
        reports[builder.target.variant] = json.loads(report.read_text())
    comparison = variant_comparison(reports)
    directory = builders[0].layout.verify_dir
    atomic.write_json(directory / "variants.json", comparison)
    atomic.write_bytes(directory / "variants.md", render_variant_comparison(comparison).encode("utf-8"))
    if failures:
        raise VerificationError(f"{len(failures)} of {len(builders)} IR variants do not match TensorFlow: "
                                f"{', '.join(failures)}; the comparison is in {directory / 'variants.md'}.")
    return directory / "variants.md"
