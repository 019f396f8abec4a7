"""invoke tasks: thin wrappers over the ds2ir package. `invoke --list` shows them."""
from __future__ import annotations

import contextlib
import json
import os
import sys
import traceback
from pathlib import Path
from typing import Iterator, List, Optional

from invoke import Collection, Context, Exit, task

from ds2ir.errors import ConfigError, Ds2irError
from ds2ir.host import applications, baseimages, ci, fetch, locks, manifest, mutation
from ds2ir.host import build as builds
from ds2ir.host import clean as cleaning
from ds2ir.host import doctor as doctors
from ds2ir.host import matrix as matrices
from ds2ir.host.asset_cache import cache_path
from ds2ir.host.compose import compose_environment, exit_codes, render_env_file, write_env_file
from ds2ir.host.docker import Docker
from ds2ir.host.project import DEFAULTS, Project
from ds2ir.host.recordings import default_recordings
from ds2ir.model.targets import Target
from ds2ir.model.targets_file import load_target
from ds2ir.model.variants import VARIANT_SEPARATOR
from ds2ir.runner import Runner, quote

#: this file's checkout: the tasks read and write its files, whichever checkout the package was installed from
CHECKOUT = Path(__file__).resolve().parent

HELP = {
    "target": "target name from targets.toml (default: its default_target)",
    "artifacts": "artifacts directory (default: artifacts/, or ds2ir.artifacts in invoke.yaml)",
    "force": "run every stage even when up to date",
    "dry_run": "print the commands without running them (as invoke's own --dry does)",
    "debug": "show Python tracebacks on errors",
    "check": "rebuild every stage and fail unless the outputs match outputs.lock.json bit for bit",
    "offline": "never touch the network: release assets must be in the cache (see `invoke fetch --import`)",
    "trust_on_first_use": "accept and record in assets.lock.toml the digest of an asset the lock does not know",
    "model": "your own memory-mapped model (.pbmm) for a target with checkpoint = \"pbmm\" (e.g. deepspeech-0.8.2-pbmm)",
    "variant": "one of the target's variants (its `variants` in targets.toml, e.g. int8; default: the target's own)",
    "all_variants": "the target's default variant, then each of its other variants (docs/variants.md)",
}


def _help(*names: str) -> dict:
    return {name: HELP[name] for name in names}


BUILD_HELP = _help("target", "variant", "artifacts", "force", "dry_run", "debug", "offline", "trust_on_first_use")


@contextlib.contextmanager
def user_errors(debug: bool) -> Iterator[None]:
    """Print ds2ir's one-paragraph errors without a traceback (unless --debug)."""
    try:
        yield
    except Ds2irError as exc:
        if debug:
            traceback.print_exc()
        raise Exit(f"ds2ir: error: {exc}", code=2)


def _project(c: Context, artifacts: Optional[str] = None) -> Project:
    """This checkout's files: invoke's ``ds2ir`` settings (invoke.yaml beside this file) under the DS2IR_*
    variables; ``artifacts``: a task's --artifacts."""
    project = Project.of_checkout(CHECKOUT, dict(c.config.get("ds2ir", {})))
    return project.with_artifacts(Path(artifacts) if artifacts else None)


def _dry(c: Context, dry_run: bool = False) -> bool:
    """A dry run: the task's --dry-run, or invoke's own --dry (``run.dry``)."""
    return dry_run or bool(c.config.run.dry)


def _no_dry_run(c: Context, task: str, instead: str) -> None:
    """invoke --dry on a task without a dry run: stop before anything runs instead of running it for real."""
    if c.config.run.dry:
        raise Exit(f"ds2ir: error: 'invoke {task}' has no dry run, so 'invoke --dry {task}' ran nothing; {instead}", code=2)


def _variants(project: Project, target: Optional[str], variant: Optional[str] = None,
              all_variants: bool = False) -> List[Target]:
    """The target as chosen: its default variant, the one --variant names, or (--all-variants) each of them."""
    targets = project.targets_file()
    chosen = targets.target(target)
    if all_variants and variant:
        raise ConfigError("--variant and --all-variants exclude each other; pass one of them.")
    names = chosen.variants if all_variants else [variant] if variant else []
    return [targets.target(f"{chosen.name}{VARIANT_SEPARATOR}{name}") for name in names] or [chosen]


def _builder(project: Project, target: Optional[str], force: bool = False, dry_run: bool = False,
             offline: bool = False, trust_on_first_use: bool = False, model: Optional[str] = None,
             variant: Optional[str] = None, chosen: Optional[Target] = None) -> builds.Builder:
    """A Builder of the target (of its ``variant``, or of ``chosen``, one of its variants)."""
    docker = Docker.from_environment(Runner(dry_run=dry_run))
    return builds.Builder(chosen or _variants(project, target, variant)[0], project=project, docker=docker, force=force,
                          offline=offline, trust_on_first_use=trust_on_first_use,
                          model=Path(model).resolve() if model else None)


def _build(c: Context, target: Optional[str], artifacts: Optional[str], force: bool, dry_run: bool, debug: bool,
           until: str, offline: bool = False, trust_on_first_use: bool = False, model: Optional[str] = None,
           variant: Optional[str] = None, all_variants: bool = False) -> List[builds.Builder]:
    """Build the chosen variants one after another: the stages they share run once (their stamps are shared)."""
    with user_errors(debug):
        project = _project(c, artifacts)
        builders = builds.share_runs([_builder(project, target, force, dry_run, offline, trust_on_first_use, model,
                                               chosen=chosen) for chosen in _variants(project, target, variant, all_variants)])
        for builder in builders:
            timings = builder.build(until=until)
            ran = ", ".join(f"{name} {seconds:.1f} s" for name, seconds in timings.items()) or "nothing (all up to date)"
            print(f"[{builder.target.label}] ran: {ran}; outputs in {builder.layout.variant_dir}")
        return list(builders)


@task(default=True, help={**BUILD_HELP, **_help("check", "model", "all_variants")})
def build(c: Context, target: Optional[str] = None, variant: Optional[str] = None, all_variants: bool = False,
          artifacts: Optional[str] = None, force: bool = False, dry_run: bool = False, debug: bool = False,
          offline: bool = False, trust_on_first_use: bool = False, check: bool = False, model: Optional[str] = None) -> None:
    """Build the target end to end: checkpoint (or .pbmm), freeze, convert, IR-vs-TF check (skips what is up to date)."""
    dry_run = _dry(c, dry_run)
    builders = _build(c, target, artifacts, force or check, dry_run, debug, "check", offline, trust_on_first_use, model,
                      variant, all_variants)
    if check and not dry_run:
        with user_errors(debug):
            lock = _project(c, artifacts).outputs_lock
            for builder in builders:
                manifest.check_outputs(lock, builder.target.label, builder.output_hashes())
                print(f"[{builder.target.label}] outputs are bit-identical to {lock.name}")


@task(name="lock-outputs", help=_help("target", "variant", "artifacts", "debug"))
def lock_outputs(c: Context, target: Optional[str] = None, variant: Optional[str] = None, artifacts: Optional[str] = None,
                 debug: bool = False) -> None:
    """Record the target's current output hashes in outputs.lock.json (what `build --check` expects)."""
    _no_dry_run(c, "lock-outputs", "'invoke build --dry-run' prints what its build would run.")
    with user_errors(debug):
        project = _project(c, artifacts)
        builder = _builder(project, target, variant=variant)
        builder.build()
        manifest.lock_outputs(project.outputs_lock, builder.target.label, builder.output_hashes())
        print(f"[{builder.target.label}] recorded {len(builder.output_hashes())} output hashes in {project.outputs_lock.name}")


@task(help=BUILD_HELP)
def freeze(c: Context, target: Optional[str] = None, variant: Optional[str] = None, artifacts: Optional[str] = None,
           force: bool = False, dry_run: bool = False, debug: bool = False, offline: bool = False,
           trust_on_first_use: bool = False) -> None:
    """Run the stages up to the frozen graph (artifacts/<target>/frozen/output_graph.pb)."""
    _build(c, target, artifacts, force, _dry(c, dry_run), debug, "freeze", offline, trust_on_first_use, variant=variant)


@task(help=BUILD_HELP)
def convert(c: Context, target: Optional[str] = None, variant: Optional[str] = None, artifacts: Optional[str] = None,
            force: bool = False, dry_run: bool = False, debug: bool = False, offline: bool = False,
            trust_on_first_use: bool = False) -> None:
    """Run the stages up to the IR (artifacts/<target>/ir/output_graph.{xml,bin}; a variant's under variants/<variant>/)."""
    _build(c, target, artifacts, force, _dry(c, dry_run), debug, "convert", offline, trust_on_first_use, variant=variant)


@task(iterable=["audio"], help={**_help("target", "variant", "artifacts", "debug"),
                                "audio": "a WAV file (repeatable; default: the recordings in data/, else a test signal)",
                                "precision": "OpenVINO inference precision: f32 (default) or bf16",
                                "all_variants": "verify every variant of the target (docs/variants.md) and compare them"})
def verify(c: Context, target: Optional[str] = None, variant: Optional[str] = None, audio: Optional[list] = None,
           precision: str = "f32", all_variants: bool = False, artifacts: Optional[str] = None, debug: bool = False) -> None:
    """Prove the IR: stream real audio through IR and TF with carried state, compare, decode; writes verify/report.{json,png}."""
    _no_dry_run(c, "verify", "'invoke build --dry-run' prints what its build would run.")
    with user_errors(debug):
        project = _project(c, artifacts)
        builders = builds.share_runs([_builder(project, target, chosen=chosen)
                                      for chosen in _variants(project, target, variant, all_variants)])
        builder = builders[0]
        recordings = ([Path(a) for a in audio] if audio else
                      default_recordings(project.recordings, builder.layout, builder.target.architecture))
        if all_variants:
            comparison = applications.verify_variants(builders, recordings, precision)
            print(comparison.read_text(), end="")
            return
        report = applications.verify(builder, recordings, precision)
        print(f"[{builder.target.label}] verified {len(recordings)} recording(s) at {precision}: {report}")


def _number(option: str, value: Optional[str]) -> Optional[float]:
    """An optional number option: invoke passes options without a typed default as text."""
    try:
        return None if value is None else float(value)
    except ValueError as exc:
        raise ConfigError(f"--{option} must be a number, got '{value}'") from exc


@task(help={**_help("target", "variant", "artifacts", "debug"), "device": "OpenVINO device (default: CPU)",
            "precision": "OpenVINO inference precision: f32 (default) or bf16",
            "scorer": "a DeepSpeech .scorer: beam search with its language model; 'release': the release's own scorer, "
                      "fetched into the cache and verified",
            "offline": HELP["offline"], "trust_on_first_use": HELP["trust_on_first_use"],
            "beam_width": "beam search with this width (default with --scorer: the model's metadata_beam_width, 500)",
            "lm_alpha": "language model weight (with --lm-beta; default: the scorer's)",
            "lm_beta": "word insertion weight (with --lm-alpha; default: the scorer's)"})
def transcribe(c: Context, audio: str, target: Optional[str] = None, variant: Optional[str] = None, device: str = "CPU",
               precision: str = "f32",
               scorer: Optional[str] = None, beam_width: int = 0, lm_alpha: Optional[str] = None,
               lm_beta: Optional[str] = None, artifacts: Optional[str] = None, debug: bool = False,
               offline: bool = False, trust_on_first_use: bool = False) -> None:
    """Transcribe a WAV file with the IR in the app image (greedy CTC, or beam search) and print the real-time factor."""
    _no_dry_run(c, "transcribe", "'invoke build --dry-run' prints what its build would run.")
    with user_errors(debug):
        builder = _builder(_project(c, artifacts), target, offline=offline, trust_on_first_use=trust_on_first_use,
                           variant=variant)
        scorer_file = builder.release_scorer() if scorer == "release" else Path(scorer).resolve() if scorer else None
        print(applications.transcribe(
            builder, Path(audio).resolve(), device=device, precision=precision, scorer=scorer_file,
            beam_width=beam_width or None, lm_alpha=_number("lm-alpha", lm_alpha), lm_beta=_number("lm-beta", lm_beta),
        ), end="")


@task(name="package-scorer", help={**_help("target", "artifacts", "debug"),
                                   "lm": "KenLM binary language model (build_binary -v trie LM.arpa LM.binary)",
                                   "vocabulary": "text file of the scorer's words, whitespace-separated",
                                   "output": "the .scorer file to write",
                                   "default_alpha": "alpha stored in the package (default: the 0.8.2 release scorer's)",
                                   "default_beta": "beta stored in the package (default: the 0.8.2 release scorer's)"})
def package_scorer(c: Context, lm: str, vocabulary: str, output: str, target: Optional[str] = None,
                   default_alpha: Optional[str] = None, default_beta: Optional[str] = None,
                   artifacts: Optional[str] = None, debug: bool = False) -> None:
    """Package a KenLM binary and a vocabulary into a DeepSpeech scorer for `invoke transcribe --scorer`.

    Plain Python, so it runs here on the host: ds2ir's own `package-scorer` command, in-process.
    """
    _no_dry_run(c, "package-scorer", "it only writes --output.")
    from ds2ir.stages import cli

    with user_errors(debug):
        project = _project(c, artifacts)
    argv = ["--debug"] if debug else []
    argv += ["package-scorer", "--artifacts", str(project.artifacts), "--lm", str(Path(lm).resolve()),
             "--vocabulary", str(Path(vocabulary).resolve()), "--output", str(Path(output).resolve())]
    argv += ["--target", target] if target else []
    argv += ["--default-alpha", default_alpha] if default_alpha is not None else []
    argv += ["--default-beta", default_beta] if default_beta is not None else []
    cli.main(argv, targets=project.targets)


@task(help={**_help("target", "artifacts", "debug"),
            "audio": "the utterance to stream (default: the first of ../shared/data/*.wav, else a test signal)",
            "repeat": "timed passes over the utterance per engine (default: 5)",
            "cold": "also time no-cache builds of both stage images (minutes; downloads every package again)"})
def bench(c: Context, target: Optional[str] = None, audio: Optional[str] = None, repeat: int = 5, cold: bool = False,
          artifacts: Optional[str] = None, debug: bool = False) -> None:
    """Time the IR and its variants, TensorFlow 1 and 2 and the native client against the memory-bandwidth bound; time builds."""
    from ds2ir.host.bench import Bench

    _no_dry_run(c, "bench", "'invoke build --dry-run' prints what its build would run.")
    with user_errors(debug):
        project = _project(c, artifacts)
        builder, *variants = builds.share_runs([_builder(project, target, chosen=chosen)
                                                for chosen in _variants(project, target, all_variants=True)])
        recording = (Path(audio) if audio else
                     default_recordings(project.recordings, builder.layout, builder.target.architecture)[0])
        report = Bench(builder, variants=variants, audio=recording.resolve(), repeat=repeat, cold=cold).run()
        print(report.read_text(), end="")


@task(name="fetch", help={**_help("target", "offline", "trust_on_first_use", "debug"),
                          "import_": "put a file you downloaded elsewhere into the cache, after verifying it",
                          "url": "with --import: the URL the file was downloaded from (default: found by digest or name)",
                          "source": "also fetch the release's source archive (for the upstream exporter)"})
def fetch_assets(c: Context, target: Optional[str] = None, offline: bool = False, trust_on_first_use: bool = False,
                 import_: Optional[str] = None, url: Optional[str] = None, source: bool = False, debug: bool = False) -> None:
    """Download release assets into the cache (verified against assets.lock.toml), or --import one."""
    with user_errors(debug):
        project = _project(c)
        lock, cache = project.assets_lock, project.cache
        if import_ and _dry(c):
            print(f"(dry run) would verify {import_} and import it into {cache}")
            return
        if import_:
            print(fetch.import_file(Path(import_), url, lock_path=lock, cache=cache, trust_on_first_use=trust_on_first_use))
            return
        for asset in fetch.release_assets(load_target(project.targets, target), source=source):
            if _dry(c):
                print(f"(dry run) would fetch {asset} into {cache_path(asset, cache)}")
                continue
            print(fetch.fetch(asset, lock_path=lock, cache=cache, offline=offline, trust_on_first_use=trust_on_first_use))


@task(help={**_help("target", "dry_run", "debug"),
            "keys": "build nothing: print CI's cache keys (images' content tags, assets lock digest) as KEY=VALUE lines"})
def images(c: Context, target: Optional[str] = None, dry_run: bool = False, keys: bool = False, debug: bool = False) -> None:
    """Build the target's freeze and convert images (tagged by their content)."""
    with user_errors(debug):
        builder = _builder(_project(c), target, dry_run=_dry(c, dry_run))
        builder.docker.preflight()
        if keys:
            for name, value in ci.cache_keys(builder.image_tags(), builder.project.assets_lock).items():
                print(f"{name}={value}")
            return
        for stage, tag in builder.images().items():
            print(f"{stage}: {tag}")


@task(help=_help("artifacts"))
def doctor(c: Context, artifacts: Optional[str] = None) -> None:
    """Check what builds need (Docker client and daemon, compose, base images, disk space, write access); print a checklist."""
    with user_errors(False):
        project = _project(c, artifacts)
    checks = doctors.run_checks(Docker.from_environment(Runner(echo_output=False)), project)
    print(doctors.render(checks))
    if any(item.blocks for item in checks):
        raise Exit("ds2ir: error: 'invoke doctor' found problems that stop a build (marked FAIL above).", code=1)


@task(help={"target": "a target to clean (repeatable; default: all)", "artifacts": HELP["artifacts"]}, iterable=["target"])
def clean(c: Context, target: Optional[list] = None, artifacts: Optional[str] = None) -> None:
    """Remove the target directories ds2ir built under artifacts/, nothing else (images stay; `docker image prune` removes those)."""
    with user_errors(False):
        project = _project(c, artifacts)
        root = project.artifacts
        removed = cleaning.clean(root, target or [], known=project.targets_file(check_files=False).names, dry_run=_dry(c))
        for path in removed:
            print(f"{'(dry run) would remove' if _dry(c) else 'removed'} {path}")
        if not removed:
            print(f"nothing to remove under {root}")


@task(name="base-images", help={
    "python_root": f"directory of relocatable CPython X.Y.Z builds (default: {baseimages.DEFAULT_PYTHON_ROOT})",
    "mirror": f"Debian mirror for debootstrap (default: {baseimages.DEFAULT_MIRROR})",
    "force": "rebuild images that exist",
    "if_missing": "build a stand-in only where the public image can be neither found nor pulled",
    "debug": HELP["debug"],
})
def base_images(c: Context, python_root: Optional[str] = None, mirror: Optional[str] = None, force: bool = False,
                if_missing: bool = False, debug: bool = False) -> None:
    """Build offline stand-ins for the targets' python base images (hosts that cannot pull)."""
    _no_dry_run(c, "base-images", "'invoke doctor' lists the base images and whether each is here.")
    with user_errors(debug):
        docker = Docker.from_environment(Runner())
        docker.preflight()
        project = _project(c)
        targets = project.targets_file(check_files=False)
        public = [image.base_image for image in targets.images.values()]
        cache = project.cache / "base-images"
        built = baseimages.build_offline_base_images(
            docker, public, python_root=Path(python_root or baseimages.DEFAULT_PYTHON_ROOT),
            mirror=mirror or baseimages.DEFAULT_MIRROR, cache=cache, force=force, if_missing=if_missing,
        )
        print("\n".join(built))


@task(help=_help("target", "debug"))
def compose(c: Context, target: Optional[str] = None, debug: bool = False) -> None:
    """Run the two services of docker-compose.yml for a target (v2 `docker compose` or v1 `docker-compose`)."""
    _no_dry_run(c, "compose", "'invoke --dry compose-env' prints the environment compose would get.")
    with user_errors(debug):
        docker = Docker.from_environment(Runner())
        docker.preflight()
        project = _project(c)
        chosen = project.target(target)
        public = (chosen.freeze_image.base_image, chosen.convert_image.base_image)
        env = compose_environment(chosen, {image: docker.resolve_base_image(image) for image in public})
        env.update(DS2IR_UID=str(os.getuid()), DS2IR_GID=str(os.getgid()), DS2IR_ARTIFACTS=str(project.artifacts))
        project.artifacts.mkdir(exist_ok=True)
        compose = docker.compose_command()
        docker.runner.run([*compose, "up", "--build"], step="compose up", env=env, cwd=project.root)
        codes = exit_codes(docker, compose, cwd=project.root, env=env)
        failed = {service: code for service, code in codes.items() if code != 0}
        if failed:
            raise Exit(f"ds2ir: error: compose services failed (exit codes {failed}); their logs are above.", code=2)


@task(name="compose-env", help=_help("debug"))
def compose_env(c: Context, debug: bool = False) -> None:
    """Regenerate .env (what plain `docker compose up` reads) from targets.toml's default target."""
    with user_errors(debug):
        project = _project(c)
        if _dry(c):
            print(f"(dry run) would write {project.root / '.env'}:\n{render_env_file(load_target(project.targets))}", end="")
            return
        write_env_file(project.root / ".env", load_target(project.targets))
        print(f"wrote {project.root / '.env'}")


@task(iterable=["targets"], help={"targets": "a target to build, or TARGET@VARIANT (repeatable; default: `matrix` in targets.toml)",
                                  "all_variants": "each target's every variant, a cell each",
                                  "list_": "print the cells instead of building them", "format_": "of --list: text or github",
                                  "check": "also fail a cell whose outputs differ from outputs.lock.json (where locked)",
                                  "jobs": "cells built side by side (default 1); each logs to matrix/logs/<target>.log",
                                  **_help("artifacts", "force", "debug")})
def matrix(c: Context, targets: Optional[list] = None, artifacts: Optional[str] = None, force: bool = False,
           list_: bool = False, format_: str = "text", check: bool = False, jobs: int = 1, all_variants: bool = False,
           debug: bool = False) -> None:
    """Build a set of targets, then tabulate versions, image sizes, times, IR hashes, IR-vs-TF error and IR loads."""
    with user_errors(debug):
        project = _project(c, artifacts)
        chosen = project.targets_file()
        cells = [chosen.target(name) for name in (targets or chosen.matrix)]
        if all_variants:
            cells = list({variant.label: variant for cell in cells for variant in
                          (chosen.target(f"{cell.name}{VARIANT_SEPARATOR}{name}") for name in cell.variants)}.values())
        if not list_:
            _no_dry_run(c, "matrix", "'invoke matrix --list' prints its cells; 'invoke build --dry-run --target T' what one would run.")
        if list_:
            if format_ not in ("text", "github"):
                raise ConfigError(f"--format must be text or github, not '{format_}'.")
            print(matrices.github_matrix(cells) if format_ == "github" else "\n".join(t.label for t in cells))
            return
        root = project.artifacts
        docker = Docker.from_environment(Runner())
        docker.preflight()
        result = matrices.run(
            cells, docker=docker, project=project,
            make_builder=lambda target, engine: builds.Builder(target, project=project, docker=engine, force=force),
            locked=manifest.read_lock(project.outputs_lock) if check else None, jobs=jobs,
        )
        print((root / matrices.MATRIX_DIR / "matrix.md").read_text())
    if not result["passed"]:
        raise Exit(f"ds2ir: matrix: some cells failed; see {root / matrices.MATRIX_DIR / 'matrix.md'}", code=1)


@task(name="matrix-gather", iterable=["cells"],
      help={"cells": "a directory holding one runner's matrix.json (repeatable)",
            "artifacts": "where matrix/matrix.{md,json} go (default: artifacts/)", "debug": HELP["debug"]})
def matrix_gather(c: Context, cells: Optional[list] = None, artifacts: Optional[str] = None, debug: bool = False) -> None:
    """Gather the cells that separate runners built (the matrix workflow) into one matrix table."""
    _no_dry_run(c, "matrix-gather", "it only writes matrix/matrix.{md,json}.")
    with user_errors(debug):
        out = _project(c, artifacts).artifacts / matrices.MATRIX_DIR
        result = matrices.gather([Path(d) for d in cells or []], out)
        print((out / "matrix.md").read_text())
    if not result["passed"]:
        raise Exit(f"ds2ir: matrix: some cells failed; see {out / 'matrix.md'}", code=1)


@task(help={"upgrade": "move unpinned dependencies to their newest releases (default: keep the locked ones)",
            "debug": HELP["debug"]})
def lock(c: Context, upgrade: bool = False, debug: bool = False) -> None:
    """Compile the hashed locks (locks/*.txt) of the images and the host with uv, from locks/*.in and pyproject.toml."""
    with user_errors(debug):
        project = _project(c)
        for path in locks.compile_locks(Runner(dry_run=_dry(c)), project.root, project.targets_file(check_files=False), upgrade=upgrade):
            print(f"{'(dry run) would write' if _dry(c) else 'wrote'} {path}")


@task(name="ci-local", iterable=["input_"],
      help={"workflow": "the workflow file in .github/workflows (default: reproduce.yml)",
            "job": "run only this job (default: every job of the workflow for the event)",
            "event": "the event that triggers the run (default: push)",
            "input_": "a workflow_dispatch input as NAME=VALUE (repeatable)",
            "log": "where act's whole output goes (default: artifacts/ci/<workflow>.log)", "lint_only": "only lint the workflows",
            "runner_artifacts": "an artifacts directory kept between runs, as a self-hosted runner's (matrix.yml builds there)",
            "debug": HELP["debug"]})
def ci_local(c: Context, workflow: str = "reproduce.yml", job: Optional[str] = None, event: str = "push",
             input_: Optional[list] = None, log: Optional[str] = None, lint_only: bool = False,
             runner_artifacts: Optional[str] = None, debug: bool = False) -> None:
    """Lint the GitHub workflows, then run one with act on a clean clone of HEAD, offline (docs/ci.md)."""
    _no_dry_run(c, "ci-local", "'invoke ci-local --lint-only' only validates the workflows.")
    with user_errors(debug):
        inputs = ci.parse_inputs(input_ or [])
        runner = Runner()
        project = _project(c)
        for path in ci.lint(project.root, runner):
            print(f"valid: {path.relative_to(project.root)}")
        if lint_only:
            return
        log_path = Path(log) if log else project.artifacts / ci.CI_DIR / f"{Path(workflow).stem}.log"
        ci.run_job(project.root, str(ci.WORKFLOWS_DIR / workflow), log_path, runner, event=event, job=job, inputs=inputs,
                   runner_artifacts=Path(runner_artifacts).resolve() if runner_artifacts else None)
        print(f"act: {workflow} ({event}{', job ' + job if job else ''}) succeeded; its log is {log_path}")


@task(help={"unit": "run only the unit tests (no Docker)", "k": "pytest -k expression",
            "coverage": "measure line coverage of src/ in every process, stage containers included (docs/testing.md)"})
def test(c: Context, unit: bool = False, k: Optional[str] = None, coverage: bool = False) -> None:
    """Run the tests: unit tests, then end-to-end tests with real containers."""
    args = [sys.executable, "-m", "pytest", "tests/unit" if unit else "tests", "-ra"]
    if k:
        args += ["-k", k]
    if not coverage:
        c.run(quote(args), pty=False)  # invoke --dry: printed, not run
        return
    _no_dry_run(c, "test --coverage", "'invoke --dry test' prints the pytest command.")
    from ds2ir.host import testcoverage

    directory = CHECKOUT / ".coverage-run"
    with user_errors(False):
        env = testcoverage.prepare(directory, CHECKOUT)
    result = c.run(quote(args), pty=False, env=env, warn=True)
    print(testcoverage.report(directory), end="")
    if result.exited:
        raise Exit(code=result.exited)


@task(help={
    "module": f"a module to mutate (repeatable; default: all of {', '.join(mutation.GATE_MODULES)})",
    "tests": "a test file or directory that judges the mutants (repeatable; default: each module's fast unit tests)",
    "only": "run only the mutants matching this name pattern, e.g. 'ds2ir.model.verify.x_within*' (repeatable)"},
      iterable=["module", "tests", "only"])
def mutate(c: Context, module: Optional[list] = None, tests: Optional[list] = None, only: Optional[list] = None) -> None:
    """Mutation testing (mutmut) of the modules that gate correctness and safety; prints the score and survivors."""
    _no_dry_run(c, "mutate", "'invoke mutate --only PATTERN' runs a few mutants.")
    with user_errors(False):
        result = mutation.run(CHECKOUT, module or list(mutation.GATE_MODULES), tests=tests or [], only=only or [])
    for survivor in result["survivors"]:
        print(survivor)
    print(json.dumps({key: result[key] for key in ("modules", "stats", "score")}, sort_keys=True))


#: the root collection, with the project's settings as invoke configuration: invoke.yaml beside this file,
#: a runtime file (-f) or INVOKE_DS2IR_<SETTING> override these defaults, and DS2IR_* variables override all
ns = Collection.from_module(sys.modules[__name__], config={"ds2ir": {**DEFAULTS, "cache": None}})
