"""invoke tasks: thin wrappers over the ds2ir package. `invoke --list` shows them."""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Optional

from invoke import Collection, Context, Exit, task

from ds2ir.errors import ConfigError
from ds2ir.host import applications, baseimages, ci, fetch, locks, manifest, mutation
from ds2ir.host import build as builds
from ds2ir.host import clean as cleaning
from ds2ir.host import doctor as doctors
from ds2ir.host import matrix as matrices
from ds2ir.host.asset_cache import cache_path
from ds2ir.host.compose import compose_environment, exit_codes, render_env_file, write_env_file
from ds2ir.host.docker import Docker
from ds2ir.host.project import DEFAULTS
from ds2ir.host.recordings import default_recordings
from ds2ir.host.tasking import BUILD_HELP, HELP, build_variants, builder_of, chosen_variants, help_for, is_dry
from ds2ir.host.tasking import TASK_HELP, number_option, project_of, refuse_dry, user_errors, variants_of
from ds2ir.model.targets_file import load_target
from ds2ir.runner import Runner, quote

#: this file's checkout: the tasks read and write its files, whichever checkout the package was installed from
CHECKOUT = Path(__file__).resolve().parent

@task(default=True, help={**BUILD_HELP, **help_for("check", "model", "all_variants")})
def build(c: Context, target: Optional[str] = None, variant: Optional[str] = None, all_variants: bool = False,
          artifacts: Optional[str] = None, force: bool = False, dry_run: bool = False, debug: bool = False,
          offline: bool = False, trust_on_first_use: bool = False, check: bool = False, model: Optional[str] = None) -> None:
    """Build the target end to end: checkpoint (or .pbmm), freeze, convert, IR-vs-TF check (skips what is up to date)."""
    dry_run = is_dry(c, dry_run)
    builders = build_variants(c, CHECKOUT, target, artifacts, force or check, dry_run, debug, "check", offline,
                              trust_on_first_use, model, variant, all_variants)
    if check and not dry_run:
        with user_errors(debug):
            lock = project_of(c, CHECKOUT, artifacts).outputs_lock
            for builder in builders:
                manifest.check_outputs(lock, builder.target.label, builder.output_hashes())
                print(f"[{builder.target.label}] outputs are bit-identical to {lock.name}")


@task(name="lock-outputs", help=help_for("target", "variant", "artifacts", "debug"))
def lock_outputs(c: Context, target: Optional[str] = None, variant: Optional[str] = None, artifacts: Optional[str] = None,
                 debug: bool = False) -> None:
    """Record the target's current output hashes in outputs.lock.json (what `build --check` expects)."""
    refuse_dry(c, "lock-outputs", "'invoke build --dry-run' prints what its build would run.")
    with user_errors(debug):
        project = project_of(c, CHECKOUT, artifacts)
        builder = builder_of(project, target, variant=variant)
        builder.build()
        manifest.lock_outputs(project.outputs_lock, builder.target.label, builder.output_hashes())
        print(f"[{builder.target.label}] recorded {len(builder.output_hashes())} output hashes in {project.outputs_lock.name}")


@task(help=BUILD_HELP)
def freeze(c: Context, target: Optional[str] = None, variant: Optional[str] = None, artifacts: Optional[str] = None,
           force: bool = False, dry_run: bool = False, debug: bool = False, offline: bool = False,
           trust_on_first_use: bool = False) -> None:
    """Run the stages up to the frozen graph (artifacts/<target>/frozen/output_graph.pb)."""
    build_variants(c, CHECKOUT, target, artifacts, force, is_dry(c, dry_run), debug, "freeze", offline, trust_on_first_use,
                   variant=variant)


@task(help=BUILD_HELP)
def convert(c: Context, target: Optional[str] = None, variant: Optional[str] = None, artifacts: Optional[str] = None,
            force: bool = False, dry_run: bool = False, debug: bool = False, offline: bool = False,
            trust_on_first_use: bool = False) -> None:
    """Run the stages up to the IR (artifacts/<target>/ir/output_graph.{xml,bin}; a variant's under variants/<variant>/)."""
    build_variants(c, CHECKOUT, target, artifacts, force, is_dry(c, dry_run), debug, "convert", offline, trust_on_first_use,
                   variant=variant)


@task(iterable=["audio"], help={**help_for("target", "variant", "artifacts", "debug"),
                                "audio": "a WAV file (repeatable; default: the recordings in data/, else a test signal)",
                                "precision": "OpenVINO inference precision: f32 (default) or bf16",
                                "all_variants": "verify every variant of the target (docs/variants.md) and compare them"})
def verify(c: Context, target: Optional[str] = None, variant: Optional[str] = None, audio: Optional[list] = None,
           precision: str = "f32", all_variants: bool = False, artifacts: Optional[str] = None, debug: bool = False) -> None:
    """Prove the IR: stream real audio through IR and TF with carried state, compare, decode; writes verify/report.{json,png}."""
    refuse_dry(c, "verify", "'invoke build --dry-run' prints what its build would run.")
    with user_errors(debug):
        project = project_of(c, CHECKOUT, artifacts)
        builders = builds.share_runs([builder_of(project, target, chosen=chosen)
                                      for chosen in chosen_variants(project, target, variant, all_variants)])
        builder = builders[0]
        recordings = ([Path(a) for a in audio] if audio else
                      default_recordings(project.recordings, builder.layout, builder.target.architecture))
        if all_variants:
            comparison = applications.verify_variants(builders, recordings, precision)
            print(comparison.read_text(), end="")
            return
        report = applications.verify(builder, recordings, precision)
        print(f"[{builder.target.label}] verified {len(recordings)} recording(s) at {precision}: {report}")



@task(help={**help_for("target", "variant", "artifacts", "debug"), "device": "OpenVINO device (default: CPU)",
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
    refuse_dry(c, "transcribe", "'invoke build --dry-run' prints what its build would run.")
    with user_errors(debug):
        builder = builder_of(project_of(c, CHECKOUT, artifacts), target, offline=offline, trust_on_first_use=trust_on_first_use,
                           variant=variant)
        scorer_file = builder.release_scorer() if scorer == "release" else Path(scorer).resolve() if scorer else None
        print(applications.transcribe(
            builder, Path(audio).resolve(), device=device, precision=precision, scorer=scorer_file,
            beam_width=beam_width or None, lm_alpha=number_option("lm-alpha", lm_alpha), lm_beta=number_option("lm-beta", lm_beta),
        ), end="")


@task(name="package-scorer", help={**help_for("target", "artifacts", "debug"),
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
    refuse_dry(c, "package-scorer", "it only writes --output.")
    from ds2ir.stages import cli

    with user_errors(debug):
        project = project_of(c, CHECKOUT, artifacts)
    argv = ["--debug"] if debug else []
    argv += ["package-scorer", "--artifacts", str(project.artifacts), "--lm", str(Path(lm).resolve()),
             "--vocabulary", str(Path(vocabulary).resolve()), "--output", str(Path(output).resolve())]
    argv += ["--target", target] if target else []
    argv += ["--default-alpha", default_alpha] if default_alpha is not None else []
    argv += ["--default-beta", default_beta] if default_beta is not None else []
    cli.main(argv, targets=project.targets)


@task(help={**help_for("target", "artifacts", "debug"),
            "audio": "the utterance to stream (default: the first of ../shared/data/*.wav, else a test signal)",
            "repeat": "timed passes over the utterance per engine (default: 5)",
            "cold": "also time no-cache builds of both stage images (minutes; downloads every package again)"})
def bench(c: Context, target: Optional[str] = None, audio: Optional[str] = None, repeat: int = 5, cold: bool = False,
          artifacts: Optional[str] = None, debug: bool = False) -> None:
    """Time the IR and its variants, TensorFlow 1 and 2 and the native client against the memory-bandwidth bound; time builds."""
    from ds2ir.host.bench import Bench

    refuse_dry(c, "bench", "'invoke build --dry-run' prints what its build would run.")
    with user_errors(debug):
        project = project_of(c, CHECKOUT, artifacts)
        builder, *variants = builds.share_runs([builder_of(project, target, chosen=chosen)
                                                for chosen in chosen_variants(project, target, all_variants=True)])
        recording = (Path(audio) if audio else
                     default_recordings(project.recordings, builder.layout, builder.target.architecture)[0])
        report = Bench(builder, variants=variants, audio=recording.resolve(), repeat=repeat, cold=cold).run()
        print(report.read_text(), end="")


@task(name="fetch", help={**help_for("target", "offline", "trust_on_first_use", "debug"),
                          "import_": "put a file you downloaded elsewhere into the cache, after verifying it",
                          "url": "with --import: the URL the file was downloaded from (default: found by digest or name)",
                          "source": "also fetch the release's source archive (for the upstream exporter)"})
def fetch_assets(c: Context, target: Optional[str] = None, offline: bool = False, trust_on_first_use: bool = False,
                 import_: Optional[str] = None, url: Optional[str] = None, source: bool = False, debug: bool = False) -> None:
    """Download release assets into the cache (verified against assets.lock.toml), or --import one."""
    with user_errors(debug):
        project = project_of(c, CHECKOUT)
        lock, cache = project.assets_lock, project.cache
        if import_ and is_dry(c):
            print(f"(dry run) would verify {import_} and import it into {cache}")
            return
        if import_:
            print(fetch.import_file(Path(import_), url, lock_path=lock, cache=cache, trust_on_first_use=trust_on_first_use))
            return
        for asset in fetch.release_assets(load_target(project.targets, target), source=source):
            if is_dry(c):
                print(f"(dry run) would fetch {asset} into {cache_path(asset, cache)}")
                continue
            print(fetch.fetch(asset, lock_path=lock, cache=cache, offline=offline, trust_on_first_use=trust_on_first_use))


@task(help={**help_for("target", "dry_run", "debug"),
            "keys": "build nothing: print CI's cache keys (images' content tags, assets lock digest) as KEY=VALUE lines"})
def images(c: Context, target: Optional[str] = None, dry_run: bool = False, keys: bool = False, debug: bool = False) -> None:
    """Build the target's freeze and convert images (tagged by their content)."""
    with user_errors(debug):
        builder = builder_of(project_of(c, CHECKOUT), target, dry_run=is_dry(c, dry_run))
        builder.docker.preflight()
        if keys:
            for name, value in ci.cache_keys(builder.image_tags(), builder.project.assets_lock).items():
                print(f"{name}={value}")
            return
        for stage, tag in builder.images().items():
            print(f"{stage}: {tag}")


@task(help=help_for("artifacts"))
def doctor(c: Context, artifacts: Optional[str] = None) -> None:
    """Check what builds need (Docker client and daemon, compose, base images, disk space, write access); print a checklist."""
    with user_errors(False):
        project = project_of(c, CHECKOUT, artifacts)
    checks = doctors.run_checks(Docker.from_environment(Runner(echo_output=False)), project)
    print(doctors.render(checks))
    if any(item.blocks for item in checks):
        raise Exit("ds2ir: error: 'invoke doctor' found problems that stop a build (marked FAIL above).", code=1)


@task(help={"target": "a target to clean (repeatable; default: all)", "artifacts": HELP["artifacts"]}, iterable=["target"])
def clean(c: Context, target: Optional[list] = None, artifacts: Optional[str] = None) -> None:
    """Remove the target directories ds2ir built under artifacts/, nothing else (images stay; `docker image prune` removes those)."""
    with user_errors(False):
        project = project_of(c, CHECKOUT, artifacts)
        root = project.artifacts
        removed = cleaning.clean(root, target or [], known=project.targets_file(check_files=False).names, dry_run=is_dry(c))
        for path in removed:
            print(f"{'(dry run) would remove' if is_dry(c) else 'removed'} {path}")
        if not removed:
            print(f"nothing to remove under {root}")


@task(name="base-images", help=TASK_HELP["base-images"])
def base_images(c: Context, python_root: Optional[str] = None, mirror: Optional[str] = None, force: bool = False,
                if_missing: bool = False, debug: bool = False) -> None:
    """Build offline stand-ins for the targets' python base images (hosts that cannot pull)."""
    refuse_dry(c, "base-images", "'invoke doctor' lists the base images and whether each is here.")
    with user_errors(debug):
        docker = Docker.from_environment(Runner())
        docker.preflight()
        project = project_of(c, CHECKOUT)
        targets = project.targets_file(check_files=False)
        public = [image.base_image for image in targets.images.values()]
        cache = project.cache / "base-images"
        built = baseimages.build_offline_base_images(
            docker, public, python_root=Path(python_root or baseimages.DEFAULT_PYTHON_ROOT),
            mirror=mirror or baseimages.DEFAULT_MIRROR, cache=cache, force=force, if_missing=if_missing,
        )
        print("\n".join(built))


@task(help=help_for("target", "debug"))
def compose(c: Context, target: Optional[str] = None, debug: bool = False) -> None:
    """Run the two services of docker-compose.yml for a target (v2 `docker compose` or v1 `docker-compose`)."""
    refuse_dry(c, "compose", "'invoke --dry compose-env' prints the environment compose would get.")
    with user_errors(debug):
        docker = Docker.from_environment(Runner())
        docker.preflight()
        project = project_of(c, CHECKOUT)
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


@task(name="compose-env", help=help_for("debug"))
def compose_env(c: Context, debug: bool = False) -> None:
    """Regenerate .env (what plain `docker compose up` reads) from targets.toml's default target."""
    with user_errors(debug):
        project = project_of(c, CHECKOUT)
        if is_dry(c):
            print(f"(dry run) would write {project.root / '.env'}:\n{render_env_file(load_target(project.targets))}", end="")
            return
        write_env_file(project.root / ".env", load_target(project.targets))
        print(f"wrote {project.root / '.env'}")


@task(iterable=["targets"], help=TASK_HELP["matrix"])
def matrix(c: Context, targets: Optional[list] = None, artifacts: Optional[str] = None, force: bool = False,
           list_: bool = False, format_: str = "text", check: bool = False, jobs: int = 1, all_variants: bool = False,
           debug: bool = False) -> None:
    """Build a set of targets, then tabulate versions, image sizes, times, IR hashes, IR-vs-TF error and IR loads."""
    with user_errors(debug):
        project = project_of(c, CHECKOUT, artifacts)
        chosen = project.targets_file()
        cells = [chosen.target(name) for name in (targets or chosen.matrix)]
        if all_variants:
            cells = list({variant.label: variant for cell in cells
                          for variant in variants_of(chosen, cell, cell.variants)}.values())
        if not list_:
            refuse_dry(c, "matrix", "'invoke matrix --list' prints its cells; 'invoke build --dry-run --target T' what one would run.")
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
    refuse_dry(c, "matrix-gather", "it only writes matrix/matrix.{md,json}.")
    with user_errors(debug):
        out = project_of(c, CHECKOUT, artifacts).artifacts / matrices.MATRIX_DIR
        result = matrices.gather([Path(d) for d in cells or []], out)
        print((out / "matrix.md").read_text())
    if not result["passed"]:
        raise Exit(f"ds2ir: matrix: some cells failed; see {out / 'matrix.md'}", code=1)


@task(help={"upgrade": "move unpinned dependencies to their newest releases (default: keep the locked ones)",
            "debug": HELP["debug"]})
def lock(c: Context, upgrade: bool = False, debug: bool = False) -> None:
    """Compile the hashed locks (locks/*.txt) of the images and the host with uv, from locks/*.in and pyproject.toml."""
    with user_errors(debug):
        project = project_of(c, CHECKOUT)
        for path in locks.compile_locks(Runner(dry_run=is_dry(c)), project.root, project.targets_file(check_files=False), upgrade=upgrade):
            print(f"{'(dry run) would write' if is_dry(c) else 'wrote'} {path}")


@task(name="ci-local", iterable=["input_"], help=TASK_HELP["ci-local"])
def ci_local(c: Context, workflow: str = "reproduce.yml", job: Optional[str] = None, event: str = "push",
             input_: Optional[list] = None, log: Optional[str] = None, lint_only: bool = False,
             runner_artifacts: Optional[str] = None, debug: bool = False) -> None:
    """Lint the GitHub workflows, then run one with act on a clean clone of HEAD, offline (docs/ci.md)."""
    refuse_dry(c, "ci-local", "'invoke ci-local --lint-only' only validates the workflows.")
    with user_errors(debug):
        inputs = ci.parse_inputs(input_ or [])
        runner = Runner()
        project = project_of(c, CHECKOUT)
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
    refuse_dry(c, "test --coverage", "'invoke --dry test' prints the pytest command.")
    from ds2ir.host import testcoverage

    directory = CHECKOUT / ".coverage-run"
    with user_errors(False):
        env = testcoverage.prepare(directory, CHECKOUT)
    result = c.run(quote(args), pty=False, env=env, warn=True)
    print(testcoverage.report(directory), end="")
    if result.exited:
        raise Exit(code=result.exited)


@task(help=TASK_HELP["mutate"], iterable=["module", "tests", "only"])
def mutate(c: Context, module: Optional[list] = None, tests: Optional[list] = None, only: Optional[list] = None) -> None:
    """Mutation testing (mutmut) of the modules that gate correctness and safety; prints the score and survivors."""
    refuse_dry(c, "mutate", "'invoke mutate --only PATTERN' runs a few mutants.")
    with user_errors(False):
        result = mutation.run(CHECKOUT, module or list(mutation.GATE_MODULES), tests=tests or [], only=only or [])
    for survivor in result["survivors"]:
        print(survivor)
    print(json.dumps({key: result[key] for key in ("modules", "stats", "score")}, sort_keys=True))


#: the root collection, with the project's settings as invoke configuration: invoke.yaml beside this file,
#: a runtime file (-f) or INVOKE_DS2IR_<SETTING> override these defaults, and DS2IR_* variables override all
ns = Collection.from_module(sys.modules[__name__], config={"ds2ir": {**DEFAULTS, "cache": None}})
