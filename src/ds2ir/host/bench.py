"""`invoke bench`: build, run the measuring containers, time builds, write ``artifacts/bench/results.{json,md}``."""
from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Any, Dict, List, NamedTuple, Sequence, Tuple

from ds2ir import atomic
from ds2ir.host.build import Builder
from ds2ir.host.images import build_stage_image
from ds2ir.host.recordings import prepare_recordings
from ds2ir.model import cpu
from ds2ir.model.bench import (
    BANDWIDTH_REPEAT,
    IR_KEY,
    IR_SETTINGS,
    SETTING_ROUNDS,
    WEIGHT_BYTES,
    bench_dir,
    bound_seconds,
    ir_key,
    ir_weight_traffic,
    memory_gib,
    ratios,
    render_build_costs,
    render_rates,
    render_ratios,
    render_table,
    render_variants,
    summarize,
    table_order,
    weight_traffic,
)


class Engine(NamedTuple):
    """One container run: which target's artifacts, which image, which command."""

    builder: Builder
    image: str  # "freeze" or "convert"
    command: str
    extra: Tuple[str, ...] = ()


class Bench:
    """`invoke bench`: build, time every engine and every variant of the IR in its container, time builds,
    write the tables. ``variants`` are builders of the target's other variants (its ``variants`` in targets.toml)."""

    def __init__(self, builder: Builder, *, variants: Sequence[Builder], audio: Path, repeat: int, cold: bool):
        self.builder = builder
        self.variants = list(variants)
        self.audio = audio
        self.repeat = repeat
        self.cold = cold
        self.directory = bench_dir(builder.artifacts)
        self.say = builder.say

    def run(self) -> Path:
        """Everything in one run; returns artifacts/bench/results.md."""

        if not self.variants:
            self.say(f"[{self.builder.target.name}] lists no variants in targets.toml: no other IR variant is benchmarked")
        for builder in [self.builder, *self.variants]:
            builder.build()
        prepare_recordings([self.audio], self.directory / "inputs", self.builder.target.architecture)
        shutil.rmtree(self.directory / "results", ignore_errors=True)
        for engine in self._engines():
            self._container(engine)
        costs = self.build_costs()
        return self._report(costs)

    def _engines(self) -> List[Engine]:
        repeat = ("--repeat", str(self.repeat))
        memory = Engine(self.builder, "convert", "bench-memory")  # before and after the engines: the best counts
        settings = [key for key, _, _ in IR_SETTINGS]
        engines = [memory]
        for round_ in range(SETTING_ROUNDS):  # rotated, so that no setting always follows the same one
            for setting in settings[round_:] + settings[:round_]:
                engines.append(Engine(self.builder, "convert", "bench-ir", ("--precision", "f32", "--setting", setting) + repeat))
        engines.append(Engine(self.builder, "convert", "bench-ir", ("--precision", "default") + repeat))
        for variant in self.variants:  # each at f32, to compare with the default IR, and at the CPU's default
            for precision in ("f32", "default"):
                engines.append(Engine(variant, "convert", "bench-ir", ("--precision", precision) + repeat))
        return engines + [
            Engine(self.builder, "freeze", "bench-tf", repeat),
            Engine(self.builder, "convert", "bench-tf", repeat),
            Engine(self.builder, "freeze", "bench-native", repeat),
            memory,
        ]

    def _container(self, engine: Engine, capture: bool = False) -> str:
        builder = engine.builder
        return builder.launcher.run(
            step=engine.command, image=builder.images()[engine.image],
            args=[engine.command, "--target", builder.target.label, *engine.extra],
            capture=capture, platform=builder.image_platform(engine.image),
        )

    def build_costs(self) -> Dict[str, object]:
        """Warm rebuild from an empty artifacts directory (what `invoke clean` leaves), no-op rebuild,
        per-stage seconds, image sizes; cold no-cache image builds with --cold."""

        docker = self.builder.docker
        costs: Dict[str, object] = {}
        if self.cold:
            costs.update(self._cold_builds())
        scratch = self.directory / "rebuild"
        shutil.rmtree(scratch, ignore_errors=True)
        rebuild = Builder(self.builder.target, project=self.builder.project.with_artifacts(scratch), docker=docker)
        rebuild.images()  # untimed: images are warm by definition (another engineer's edit may need new ones)
        for label in ("warm rebuild after clean, s", "no-op rebuild, s"):
            started = time.monotonic()
            rebuild.build()
            costs[label] = time.monotonic() - started
        for stamp in sorted(rebuild.layout.stamps_dir.glob("*.json")):
            costs[f"stage {stamp.stem}, s"] = float(json.loads(stamp.read_text())["seconds"])
        shutil.rmtree(scratch)
        for stage, tag in self.builder.images().items():
            costs[f"{stage} image size, MB"] = docker.image_size(tag) / 1e6
        return costs

    def _cold_builds(self) -> Dict[str, object]:
        """Each stage image built with --no-cache under a tag of its own, timed, then that tag removed."""
        docker = self.builder.docker
        costs: Dict[str, object] = {}
        for spec in (self.builder.target.freeze_image, self.builder.target.convert_image):
            tag = f"ds2ir-bench/{spec.name}:cold"
            started = time.monotonic()
            build_stage_image(docker, spec, self.builder.project.root, tag, no_cache=True, source=self.builder.source_archive(spec))
            costs[f"cold {spec.stage} image build (--no-cache), s"] = time.monotonic() - started
            docker.call([docker.executable, "image", "rm", tag], step="remove cold image", quiet=True)
        return costs

    def _report(self, costs: Dict[str, object]) -> Path:
        arch, n_classes = self.builder.target.architecture, self.builder.target.n_classes
        raw = {path.stem: json.loads(path.read_text()) for path in sorted((self.directory / "results").glob("*.json"))}
        memory = raw.pop("memory")
        measured = memory["bandwidth_gb_s"]
        bandwidth = max(value for kind in measured.values() for value in kind.values()) * 1e9
        settings = {ir_key(self.builder.target.variant, "f32", key): label for key, label, _ in IR_SETTINGS}
        rows = [summarize(raw[key], arch, n_classes, bandwidth) for key in sorted(raw, key=table_order)
                if key == IR_KEY or key not in settings]
        settings_rows = [summarize(raw[key], arch, n_classes, bandwidth)._replace(engine=label)
                         for key, label in settings.items()]
        host = cpu.describe()
        machine: Dict[str, Any] = {"cpu": host["model"], "vector_extensions": host["vector_extensions"], "cores": os.cpu_count(),
                   "memory_gib": round(memory_gib(Path("/proc/meminfo").read_text()), 1),
                   "load_at_start": float(memory["sweeps"][0]["load"])}
        builders = [self.builder, *self.variants]
        data = {
            "target": self.builder.target.name, "audio": str(self.audio), "repeat": self.repeat, "machine": machine,
            "bandwidth_gb_s": bandwidth / 1e9, "bandwidth_measured_gb_s": measured,
            "bound_ms": {p: bound_seconds(arch, n_classes, p, bandwidth) * 1e3 for p in ("f32", "bf16")},
            "weight_traffic_bytes": weight_traffic(arch, n_classes, WEIGHT_BYTES["f32"])._asdict(),
            "openvino": str(raw.get(IR_KEY, {}).get("openvino_version", "")),
            "variants": {b.target.variant: {"target": b.target.label, "ir_bin_mb": b.layout.ir_bin.stat().st_size / 1e6,
                                            "frozen_graph_sha256": b.output_hashes().get("frozen/output_graph.pb"),
                                            "weight_traffic_f32_bytes": ir_weight_traffic(b.target, "f32").per_window}
                         for b in builders},
            "rows": [dict(row._asdict(), window=row.window._asdict(), rtf=row.rtf._asdict()) for row in rows],
            "settings_rows": [dict(row._asdict(), window=row.window._asdict(), rtf=row.rtf._asdict()) for row in settings_rows],
            "ratios": ratios(rows), "build_costs": costs, "raw": raw,
        }
        atomic.write_json(self.directory / "results.json", data)
        self._container(Engine(self.builder, "convert", "bench-plot"))
        text = (
            f"# ds2ir bench: {self.builder.target.name}\n\n"
            f"{machine['cpu']} ({', '.join(machine['vector_extensions']) or 'vector extensions unknown'}), "
            f"{machine['cores']} cores, {machine['memory_gib']} GiB; load average "
            f"{machine['load_at_start']:.2f} at the start. Audio: {self.audio.name}, "
            f"{rows[0].rtf.n if rows else 0} timed passes.\n\n"
            f"Memory bandwidth, best of {BANDWIDTH_REPEAT} x {len(memory['sweeps'])} sweeps: copy {render_rates(measured['copy'])}, "
            f"read {render_rates(measured['read'])}; the bound uses {bandwidth / 1e9:.1f} GB/s: "
            f"{data['bound_ms']['f32']:.1f} ms per window with f32 weights, {data['bound_ms']['bf16']:.1f} ms with bf16.\n\n"
            + render_table(rows) + "\n" + render_ratios(data["ratios"])
            + "\nIR variants (targets.toml, docs/variants.md):\n\n" + render_variants(data["variants"], bandwidth)
            + f"\nRuntime settings of the f32 IR, each in {SETTING_ROUNDS} containers, alternated:\n\n"
            + render_table(settings_rows) + "\n" + render_build_costs(costs)
        )
        atomic.write_bytes(self.directory / "results.md", text.encode("utf-8"))
        return self.directory / "results.md"
