"""Where each stage writes under an artifacts root, on the host and in the containers."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ds2ir.paths import check_name, path_under

TARGETS_ENV = "DS2IR_TARGETS"
# Where stage containers see the artifacts directory and the targets file.
CONTAINER_ARTIFACTS = Path("/artifacts")
CONTAINER_TARGETS = Path("/etc/ds2ir/targets.toml")


@dataclass(frozen=True)
class ArtifactLayout:
    """Where each stage writes, under an artifacts root (host or container)."""

    root: Path
    target: str

    @property
    def target_dir(self) -> Path:
        return path_under(self.root, check_name(self.target))

    @property
    def checkpoint_dir(self) -> Path:
        return self.target_dir / "checkpoint"

    @property
    def frozen_dir(self) -> Path:
        return self.target_dir / "frozen"

    @property
    def frozen_graph(self) -> Path:
        return self.frozen_dir / "output_graph.pb"

    @property
    def frozen_pbmm(self) -> Path:
        """The frozen graph memory-mapped, as DeepSpeech's native client loads its release model."""
        return self.frozen_dir / "output_graph.pbmm"

    @property
    def verification(self) -> Path:
        """How a release checkpoint without a published digest was verified (by agreement with the .pbmm)."""
        return self.target_dir / "verification.json"

    @property
    def model_file(self) -> Path:
        """The memory-mapped model a "pbmm" target is built from (fetched, or the user's --model)."""
        return self.target_dir / "model" / "model.pbmm"

    @property
    def ir_dir(self) -> Path:
        return self.target_dir / "ir"

    @property
    def ir_xml(self) -> Path:
        return self.ir_dir / "output_graph.xml"

    @property
    def ir_bin(self) -> Path:
        return self.ir_dir / "output_graph.bin"

    @property
    def check_dir(self) -> Path:
        """The IR-vs-TF check on a random window: inputs, TF outputs, report."""
        return self.target_dir / "check"

    @property
    def check_reference(self) -> Path:
        """The reference stage's random windows, TF outputs and float64 ground truth, for the check."""
        return self.check_dir / "tf_reference.npz"

    @property
    def check_report(self) -> Path:
        return self.check_dir / "report.json"

    @property
    def training_dir(self) -> Path:
        """Trained targets: the recording and transcript, copied in so the container sees them."""
        return self.target_dir / "training"

    @property
    def training_report(self) -> Path:
        return self.target_dir / "training.json"

    @property
    def verify_dir(self) -> Path:
        """`invoke verify`: prepared recordings, TF outputs, report.json, report.png."""
        return self.target_dir / "verify"

    @property
    def stamps_dir(self) -> Path:
        return self.target_dir / ".stamps"
