"""Where each stage writes under an artifacts root, on the host and in the containers."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ds2ir.model.targets import Target
from ds2ir.paths import check_name, path_under

TARGETS_ENV = "DS2IR_TARGETS"
# Where stage containers see the artifacts directory and the targets file.
CONTAINER_ARTIFACTS = Path("/artifacts")
CONTAINER_TARGETS = Path("/etc/ds2ir/targets.toml")


@dataclass(frozen=True)
class ArtifactLayout:
    """Where each stage writes, under an artifacts root (host or container).

    A target's checkpoint is shared by all its variants; a frozen graph (and its TF reference) by
    the variants with the same LSTM; each variant has its own IR, check and verify directories.
    The default variant's are the target directory's own (``<target>/frozen``, ``<target>/ir``);
    another variant's IR is under ``<target>/variants/<variant>/``, a frozen graph with another
    LSTM under ``<target>/graphs/<lstm>/``. Each directory keeps the stamps of its stages in ``.stamps``.
    """

    root: Path
    target: str
    #: the variant's name, empty for the default variant
    variant: str = ""
    #: the LSTM of the variant's frozen graph, empty when it is the default variant's
    graph: str = ""

    @classmethod
    def of(cls, root: Path, target: Target) -> "ArtifactLayout":
        """The layout of ``target`` as selected: its default variant, or another (Target.with_variant)."""
        return cls(root, target.name, variant="" if target.is_default_variant else target.variant,
                   graph=target.lstm if target.own_frozen_graph else "")

    @property
    def target_dir(self) -> Path:
        return path_under(self.root, check_name(self.target))

    @property
    def variant_dir(self) -> Path:
        """The variant's IR, check and verify directories and its manifest are here."""
        return path_under(self.target_dir, "variants", check_name(self.variant)) if self.variant else self.target_dir

    @property
    def graph_dir(self) -> Path:
        """The variant's frozen graph and its TF reference are here."""
        return path_under(self.target_dir, "graphs", check_name(self.graph)) if self.graph else self.target_dir

    @property
    def checkpoint_dir(self) -> Path:
        return self.target_dir / "checkpoint"

    @property
    def frozen_dir(self) -> Path:
        return self.graph_dir / "frozen"

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
        return self.variant_dir / "ir"

    @property
    def ir_xml(self) -> Path:
        return self.ir_dir / "output_graph.xml"

    @property
    def ir_bin(self) -> Path:
        return self.ir_dir / "output_graph.bin"

    @property
    def check_dir(self) -> Path:
        """The IR-vs-TF check on seeded random windows: its report (and the default variant's TF reference)."""
        return self.variant_dir / "check"

    @property
    def check_reference(self) -> Path:
        """The reference stage's random windows, TF outputs and float64 ground truth: one per frozen graph."""
        return self.graph_dir / "check" / "tf_reference.npz"

    @property
    def check_report(self) -> Path:
        return self.check_dir / "report.json"

    @property
    def manifest(self) -> Path:
        """What went into the variant's build and what came out (host/manifest.py)."""
        return self.variant_dir / "manifest.json"

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
        return self.variant_dir / "verify"

    @property
    def stamps_dir(self) -> Path:
        """The stamps of the target's checkpoint stage (the default variant's: of every stage)."""
        return self.target_dir / ".stamps"

    @property
    def graph_stamps_dir(self) -> Path:
        """The stamps of the stages that make the variant's frozen graph and its reference."""
        return self.graph_dir / ".stamps"

    @property
    def variant_stamps_dir(self) -> Path:
        """The stamps of the stages that make the variant's IR and check it."""
        return self.variant_dir / ".stamps"
