"""Variants as an axis of a target: `variants` in targets.toml, TARGET@VARIANT, where each variant's
artifacts go and which stages the variants share (docs/variants.md)."""
from __future__ import annotations

from pathlib import Path

import pytest

from ds2ir.errors import ConfigError
from ds2ir.host.stamps import stage_configuration, stages_for, stamp_path
from ds2ir.model.layout import ArtifactLayout
from ds2ir.model.targets_file import TargetsFile
from ds2ir.model.variants import VARIANT_NAMES, variant_keys, variant_name
from tests._support import fake_docker
from tests._support.checkout import targets_file
from tests.e2e.helpers import invoke
from tests.unit.test_config import _write

ROOT = Path("/a")


@pytest.fixture(scope="module")
def targets() -> TargetsFile:
    return TargetsFile.load(targets_file())


def test_a_target_lists_its_variants_default_first_and_its_descendants_inherit_them(targets):
    small = targets.target("synthetic-small")
    assert small.variants == ("fp32", "fp16", "int8", "hoisted-fp32", "hoisted-int8")
    assert small.variant == small.default_variant == "fp32" and small.is_default_variant and small.label == "synthetic-small"
    # the .pbmm's graph and other exporters cannot be hoisted: an inherited list loses those variants
    for name in ("deepspeech-0.8.2-pbmm", "coqui-stt-1.4.0", "deepspeech-0.8.2-upstream"):
        assert targets.target(name).variants == ("fp32", "fp16", "int8"), name
    assert targets.target("synthetic-small-ov2022.3").variants == ("fp32", "fp16", "hoisted-fp32")  # its own list


@pytest.mark.parametrize("name", VARIANT_NAMES)
def test_each_variant_name_stands_for_its_keys_and_back(name):
    keys = variant_keys(name)
    assert variant_name(keys["lstm"], keys["ir_precision"], keys["weight_compression"]) == name


def test_target_at_variant_is_the_target_converted_to_that_variant(targets):
    small, int8 = targets.target("synthetic-small"), targets.target("synthetic-small@int8")
    assert (int8.name, int8.label, int8.variant, int8.is_default_variant) == ("synthetic-small", "synthetic-small@int8", "int8", False)
    assert (int8.weight_compression, int8.ir_precision, int8.lstm) == ("int8", "FP32", "fused")
    assert targets.target("synthetic-small@hoisted-fp32").lstm == "hoisted"
    assert targets.target("synthetic-small@fp32") == small  # the default, named
    # Everything but the IR's keys is the target's own: the same checkpoint, images and fingerprint otherwise.
    assert {k: v for k, v in int8.fingerprint().items() if k != "weight_compression"} == \
           {k: v for k, v in small.fingerprint().items() if k != "weight_compression"}


def test_an_unknown_variant_or_an_old_variant_target_name_says_what_to_use(targets):
    with pytest.raises(ConfigError, match="has no variant 'int16'; it is converted to fp32, fp16, int8") as excinfo:
        targets.target("synthetic-small@int16")
    assert excinfo.value.key == "targets.synthetic-small.variants"
    with pytest.raises(ConfigError, match="has no variant 'int8'"):  # its convert image has no NNCF
        targets.target("synthetic-small-ov2022.3@int8")
    with pytest.raises(ConfigError, match="use '--target synthetic-small --variant hoisted-int8'"):
        targets.target("synthetic-small-fast-int8")


@pytest.mark.parametrize("text, message", [
    ('variants = "int8"', "must be a list of variant names"),
    ('variants = ["int4"]', "unknown variant 'int4'. Did you mean 'int8'?"),
    ('variants = ["int8", "int8"]', "variant 'int8' is listed twice"),
    ('extends = "coqui-stt-1.4.0"\nvariants = ["hoisted-fp32"]', "hoists the LSTM.* exporter \"coqui-stt\""),
    ('extends = "deepspeech-0.8.2-pbmm"\nvariants = ["hoisted-int8"]', "hoists the LSTM.* the .pbmm's graph"),
])
def test_a_bad_variants_list_names_the_key(tmp_path, text, message):
    text = text if "extends" in text else 'extends = "synthetic-small"\n' + text
    with pytest.raises(ConfigError, match=message) as excinfo:
        TargetsFile.load(_write(tmp_path, f"\n[targets.x]\n{text}\n"))
    assert excinfo.value.key == "targets.x.variants"


def test_fp16_with_int8_weights_has_no_variant_name_and_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="int8 weights are compressed from an FP32 IR") as excinfo:
        TargetsFile.load(_write(tmp_path, '\n[targets.x]\nextends = "synthetic-small"\nir_precision = "FP16"\n'
                                          'weight_compression = "int8"\n'))
    assert excinfo.value.key == "targets.x.weight_compression"


def test_the_own_variant_listed_is_its_default_and_a_matrix_cell_may_be_a_variant(tmp_path):
    targets = TargetsFile.load(_write(tmp_path, '\n[targets.x]\nextends = "synthetic-small"\nir_precision = "FP16"\n'
                                                'variants = ["fp32", "fp16"]\n'))
    assert targets.target("x").variants == ("fp16", "fp32")
    assert "synthetic-0.8.2@fp16" in TargetsFile.load(targets_file()).matrix
    bad = (targets_file().read_text().replace('"synthetic-0.8.2@fp16"', '"synthetic-0.8.2@fp64"'))
    (tmp_path / "bad.toml").write_text(bad)
    with pytest.raises(ConfigError, match="has no variant 'fp64'"):
        TargetsFile.load(tmp_path / "bad.toml")


def test_the_default_variant_keeps_the_target_directory_and_others_share_what_they_can(targets):
    default = ArtifactLayout.of(ROOT, targets.target("synthetic-small"))
    assert default == ArtifactLayout(ROOT, "synthetic-small")  # docs, tests and outputs.lock.json rely on these paths
    assert (default.frozen_graph, default.ir_xml, default.check_reference, default.check_report) == (
        ROOT / "synthetic-small/frozen/output_graph.pb", ROOT / "synthetic-small/ir/output_graph.xml",
        ROOT / "synthetic-small/check/tf_reference.npz", ROOT / "synthetic-small/check/report.json")
    int8 = ArtifactLayout.of(ROOT, targets.target("synthetic-small@int8"))
    assert (int8.frozen_graph, int8.check_reference, int8.checkpoint_dir) == (
        default.frozen_graph, default.check_reference, default.checkpoint_dir)
    assert int8.ir_xml == ROOT / "synthetic-small/variants/int8/ir/output_graph.xml"
    assert int8.check_report == ROOT / "synthetic-small/variants/int8/check/report.json"
    assert int8.manifest == ROOT / "synthetic-small/variants/int8/manifest.json"
    hoisted = ArtifactLayout.of(ROOT, targets.target("synthetic-small@hoisted-int8"))
    assert hoisted.frozen_graph == ROOT / "synthetic-small/graphs/hoisted/frozen/output_graph.pb"
    assert hoisted.check_reference == ROOT / "synthetic-small/graphs/hoisted/check/tf_reference.npz"
    assert hoisted.checkpoint_dir == default.checkpoint_dir


def _stamps(target) -> dict:
    layout = ArtifactLayout.of(ROOT, target)
    return {stage.name: stamp_path(layout, stage.name) for stage in stages_for(target, layout)}


def test_variants_share_the_stamps_of_the_stages_they_share(targets):
    default, int8, fp16 = (_stamps(targets.target(name)) for name in ("synthetic-small", "synthetic-small@int8",
                                                                        "synthetic-small@fp16"))
    hoisted_fp32, hoisted_int8 = (_stamps(targets.target(f"synthetic-small@{name}")) for name in ("hoisted-fp32", "hoisted-int8"))
    assert default["convert"] == ROOT / "synthetic-small/.stamps/convert.json"
    for shared in ("checkpoint", "freeze", "reference"):  # int8 and fp16 only convert and check
        assert int8[shared] == fp16[shared] == default[shared]
    assert int8["convert"] == ROOT / "synthetic-small/variants/int8/.stamps/convert.json" != fp16["convert"]
    assert hoisted_fp32["checkpoint"] == default["checkpoint"]  # one checkpoint per target
    assert hoisted_fp32["freeze"] == hoisted_int8["freeze"] == ROOT / "synthetic-small/graphs/hoisted/.stamps/freeze.json"
    assert hoisted_fp32["reference"] == hoisted_int8["reference"] != default["reference"]
    distinct = {path for stamps in (default, int8, fp16, hoisted_fp32, hoisted_int8) for path in stamps.values()}
    assert len(distinct) == 1 + 2 * 2 + 5 * 2  # a checkpoint, two frozen graphs with references, five IRs with checks


def test_a_stage_keys_only_what_it_reads_so_variants_find_shared_stages_up_to_date(targets):
    def configuration(name: str, stage: str) -> dict:
        target = targets.target(name)
        (chosen,) = [s for s in stages_for(target, ArtifactLayout.of(ROOT, target)) if s.name == stage]
        return stage_configuration(target, chosen)

    names = ["synthetic-small", "synthetic-small@int8", "synthetic-small@fp16", "synthetic-small@hoisted-int8"]
    assert len({repr(configuration(name, "checkpoint")) for name in names}) == 1
    assert configuration("synthetic-small@int8", "freeze") == configuration("synthetic-small", "freeze")
    assert configuration("synthetic-small@hoisted-int8", "freeze") == configuration("synthetic-small@hoisted-fp32", "freeze")
    assert configuration("synthetic-small@hoisted-fp32", "freeze") != configuration("synthetic-small", "freeze")
    assert configuration("synthetic-small@int8", "convert") != configuration("synthetic-small", "convert")


def test_matrix_all_variants_makes_each_variant_a_cell_and_lists_them_for_github():
    listed = invoke("matrix", "--list", "--targets", "synthetic-small", "--targets", "synthetic-0.8.2@fp16",
                    "--all-variants").stdout.split()
    assert listed == ["synthetic-small", "synthetic-small@fp16", "synthetic-small@int8", "synthetic-small@hoisted-fp32",
                      "synthetic-small@hoisted-int8", "synthetic-0.8.2", "synthetic-0.8.2@fp16", "synthetic-0.8.2@int8",
                      "synthetic-0.8.2@hoisted-fp32", "synthetic-0.8.2@hoisted-int8"]
    github = invoke("matrix", "--list", "--format", "github", "--targets", "synthetic-small@int8").stdout.strip()
    assert github == '{"include":[{"target":"synthetic-small@int8"}]}'


def test_variant_options_exclude_each_other_and_a_dry_run_shows_what_a_variant_runs(tmp_path):
    env = fake_docker.install(tmp_path / "docker")
    both = invoke("build", "--target", "synthetic-small", "--variant", "int8", "--all-variants", "--dry-run", env=env,
                  check=False)
    assert both.returncode == 2 and "--variant and --all-variants exclude each other" in both.stdout
    dry = invoke("build", "--target", "synthetic-small", "--variant", "hoisted-int8", "--dry-run",
                 "--artifacts", str(tmp_path / "artifacts"), env=env).stdout
    assert "[synthetic-small@hoisted-int8] convert: running (dry run)" in dry
    assert "convert --target synthetic-small@hoisted-int8" in dry  # the stage command names the variant
    assert "outputs in " + str(tmp_path / "artifacts/synthetic-small/variants/hoisted-int8") in dry
    every = invoke("build", "--target", "synthetic-small", "--all-variants", "--dry-run", "--artifacts",
                   str(tmp_path / "artifacts"), env=env).stdout
    assert every.count("checkpoint: running (dry run)") == 1 and every.count("freeze: running (dry run)") == 2
    assert every.count("convert: running (dry run)") == 5
    assert "[synthetic-small@int8] freeze: made above for another variant, skipped" in every
    assert not (tmp_path / "artifacts").exists()
