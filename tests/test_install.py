"""Installing satori: the distribution's name, its extras, every install hint, the GPU environment."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import pytest

from satori_cli.commands.doctor import PACKAGES, diagnose
from satori_cli.errors import DIST, MissingDependency, install_hint

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    tomllib = pytest.importorskip("tomli")

REPO = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
EXTRAS = PROJECT["optional-dependencies"]
OLD_DIST = "satori" + "-cli"  # spelled so that this file does not match itself
# `pip install 'NAME[extra,...]'` as written in code, docs and the build files.
HINT = re.compile(r"pip install (?:-e )?'([\w.-]+)\[([a-z0-9,]+)\]'")


def load_resolver():
    spec = importlib.util.spec_from_file_location("resolve_gpu", REPO / ".ci" / "resolve_gpu.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def text_files() -> list[Path]:
    roots = [REPO / "satori_cli", REPO / "tests", REPO / "benchmarks", REPO / ".ci"]
    files = [p for root in roots for p in root.rglob("*") if p.suffix in {".py", ".yaml", ""} and p.is_file()]
    return [*files, REPO / "README.md", REPO / "Makefile", REPO / "pyproject.toml"]


def test_the_distribution_is_not_the_unrelated_satori_cli_on_pypi():
    # "satori-cli" on PyPI is a 2017 "Satori RTM CLI"; the import package and command stay.
    assert PROJECT["name"] == DIST == "satori-r1"
    assert PROJECT["scripts"] == {"satori": "satori_cli.app:main"}


def test_every_install_hint_names_this_distribution_and_an_extra_it_has():
    seen = 0
    for path in text_files():
        text = path.read_text(encoding="utf-8", errors="replace")
        assert OLD_DIST + "[" not in text, f"{path} still names the old distribution"
        for match in HINT.finditer(text):
            name, extras = match.groups()
            if name == ".":  # pip install -e '.[train]' from a clone
                name = DIST
            assert name == DIST, f"{path}: {match.group(0)}"
            for extra in extras.split(","):
                assert extra in EXTRAS, f"{path}: {match.group(0)} names an unknown extra"
                seen += 1
    assert seen >= 10  # doctor, preflight, runner, eval, serve, README, Makefile ...


def test_self_references_in_extras_use_the_distribution_name():
    for extra, requirements in EXTRAS.items():
        for requirement in requirements:
            if requirement.startswith("satori"):
                assert requirement.split("[")[0] == DIST, (extra, requirement)


def test_install_hints_in_code():
    assert install_hint("train") == "pip install 'satori-r1[train]'"
    # vLLM needs pillow>=13 and gradio 6 pillow<13: the gpu hint says where it belongs.
    assert install_hint("gpu").startswith("pip install 'satori-r1[gpu]' in a CUDA environment")
    assert "pip install 'satori-r1[eval]'" in str(MissingDependency("vlmeval", "eval", "satori eval"))


def test_doctor_hints_are_commands_for_existing_extras(satori_home):
    for extra in PACKAGES.values():
        assert extra in EXTRAS or extra.startswith("optional, CUDA only: pip install ")
    for check in diagnose(satori_home, check_hub=False).checks:
        for match in HINT.finditer(check.hint):
            assert match.group(1) == DIST and set(match.group(2).split(",")) <= set(EXTRAS), check


def test_pillow_is_not_capped_by_satori_and_gpu_holds_one_environment():
    pillow = next(r for r in PROJECT["dependencies"] if r.startswith("pillow"))
    assert "<" not in pillow  # vLLM 0.33 needs pillow>=13; gradio (serve) caps it itself
    gpu = " ".join(EXTRAS["gpu"])
    assert "vllm>=0.33,<0.34" in gpu and "deepspeed" in gpu
    assert f"{DIST}[train,eval]" in gpu  # ms-swift, VLMEvalKit and (through both) the rewards
    assert "serve" not in gpu and "gradio" not in gpu
    assert f"{DIST}[rewards]" in EXTRAS["train"] and f"{DIST}[rewards]" in EXTRAS["eval"]


def test_the_readme_gpu_install_is_the_command_ci_resolves():
    resolver = load_resolver()
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme.split("### GPU machine", 1)[1].split("\n## ", 1)[0]
    assert resolver.README_COMMAND == "pip install -e '.[gpu]'"
    assert resolver.README_COMMAND in section
    assert resolver.README_COMMAND in (REPO / "Makefile").read_text(encoding="utf-8")  # make setup-gpu
    assert "make resolve-gpu" in (REPO / ".ci" / "run").read_text(encoding="utf-8")


def test_the_resolver_ignores_machine_pip_settings_and_installs_nothing(tmp_path):
    resolver = load_resolver()
    env = resolver.pip_env(
        {
            "PATH": "/bin",
            "PIP_CERT": "/ca.pem",
            "PIP_CONSTRAINT": "/etc/xdg/pip/constraints.txt",
            "PIP_FIND_LINKS": "/opt/wheels",
            "PIP_EXTRA_INDEX_URL": "file:///opt/pypi/simple",
        }
    )
    assert env["PIP_CONFIG_FILE"] == "/dev/null" and env["PIP_CERT"] == "/ca.pem" and env["PATH"] == "/bin"
    assert not {"PIP_CONSTRAINT", "PIP_FIND_LINKS", "PIP_EXTRA_INDEX_URL"} & set(env)
    argv = resolver.pip_argv("/py", tmp_path / "r.json", "https://pypi.org/simple", fast_deps=True)
    assert argv[:4] == ["/py", "-m", "pip", "install"]
    assert {"--dry-run", "--ignore-installed", "--use-feature=fast-deps"} <= set(argv)
    assert argv[argv.index("--report") + 1] == str(tmp_path / "r.json")
    assert argv[-2:] == ["-e", ".[gpu]"]
    assert "--use-feature=fast-deps" not in resolver.pip_argv("/py", tmp_path, "u", fast_deps=False)


def test_the_resolver_checks_what_it_resolved():
    resolver = load_resolver()
    good = {
        "ms-swift": "4.6.0",
        "vllm": "0.33.0",
        "deepspeed": "0.19.8",
        "ms-vlmeval": "0.0.20",
        "nltk": "3.10.4",
        "msgspec": "0.23.0",
        "qwen-vl-utils": "0.0.14",
        "torch": "2.14.0",
        "pillow": "13.0.0",
        "transformers": "5.19.0",
    }
    report = {"install": [{"metadata": {"name": n.replace("-", "_"), "version": v}} for n, v in good.items()]}
    assert resolver.resolved_versions(report) == good
    assert resolver.problems(good) == []
    assert resolver.problems({**good, "vllm": "0.11.0"}) == ["vllm resolved to 0.11.0, expected 0.33.*"]
    assert resolver.problems({**good, "gradio": "6.31.0"}) == ["gradio is in the GPU environment"]
    missing = {k: v for k, v in good.items() if k != "deepspeed"}
    assert resolver.problems(missing) == ["deepspeed is not in the resolved environment"]
