"""Environment check: ``python -m glmcourse doctor`` (or ``make doctor``).

Prints one [OK]/[FAIL] line per check; every FAIL says what was found, what is supported and the
command that fixes it. Exit status 1 when anything failed, so a bug report can start with its output.

The supported version ranges live in SUPPORTED below and nowhere else. pyproject.toml carries the
same lower bounds (a test keeps the two in step). The exact versions a set-up installs come from the
lock, ``requirements/lock.txt`` (``make lock`` writes it from pyproject's ranges); the doctor names
every installed version that differs from it.
"""
from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import re
import shutil
import sys
from dataclasses import dataclass

from glmcourse.i18n import _

# package (distribution name) -> (lowest supported, first unsupported, what needs it)
SUPPORTED = {
    "python": ("3.10", "3.14", "the course package"),
    "torch": ("2.1", "3", "every lesson"),
    # 5.25 requires the `kernels` package, which fetches compiled code from a hub (settings.py)
    "transformers": ("4.45", "5.25", "every lesson (ChatGLM-6B's own remote code needs 4.27-4.33)"),
    "peft": ("0.11", "1", "05-06 LoRA"),
    "accelerate": ("0.30", "2", "05 Trainer"),
    "datasets": ("2.19", "6", "04-05 tokenized rows"),
    "bitsandbytes": ("0.45", "1", "02 quantization, 05 8-bit/4-bit bases"),
    "ipywidgets": ("8.1", "9", "01-03 interactive cells"),
    "jupyterlab_widgets": ("3.0", "4", "widgets in JupyterLab; must match ipywidgets"),
    "matplotlib": ("3.7", "4", "plots in every lesson"),
    "mplfonts": ("0.0.11", "1", "中文 in figures (it bundles the Noto Sans CJK SC font)"),
    "nbval": ("0.11", "1", "make test (notebooks as tests)"),
    "gradio": ("4.0", "7", "03 web demo"),
}
# ipywidgets major -> the jupyterlab_widgets major built for it
WIDGETS_PAIRS = {8: 3, 7: 1}
TORCH_PIN = "2.13.0"  # the CPU build the Makefile installs (an open torch requirement pulls CUDA)
# torch is installed on its own, before the lock: its build (CPU or CUDA) depends on the machine and the
# index. A CUDA build brings its runtime too; those packages are torch's, not the course's.
TORCH_RUNTIME_PREFIXES = ("nvidia-", "cuda-", "triton")
# Installed with the virtual environment itself, not by the course.
VENV_OWN = {"pip", "setuptools", "wheel"}
MIN_RAM_GIB = 4.0  # the course model, a LoRA run and JupyterLab together stay well under this
MIN_FREE_DISK_GIB = 2.0  # .venv is already installed; runs/ (checkpoints, adapters) needs room


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""

    def lines(self) -> list[str]:
        out = [f"[{'OK' if self.ok else 'FAIL'}] {self.name}: {self.detail}"]
        if not self.ok and self.fix:
            out.append("       " + _("fix: {command}", command=self.fix))
        return out


# ---------------------------------------------------------------------------- lookups (patchable)
def version_of(package: str) -> str | None:
    """Installed version of a distribution, or None. Tests patch this to fake an environment."""
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def python_version() -> str:
    return ".".join(str(p) for p in sys.version_info[:3])


def ram_gib() -> tuple[float, float]:
    """(total, available) memory in GiB."""
    import psutil

    mem = psutil.virtual_memory()
    return mem.total / 2**30, mem.available / 2**30


def free_disk_gib(path: str) -> float:
    return shutil.disk_usage(path).free / 2**30


def torch_device() -> str:
    """'cuda (name, N GiB)', 'mps' or 'cpu (N threads)'. Imports torch."""
    import torch

    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        return f"cuda ({props.name}, {props.total_memory / 2**30:.0f} GiB)"
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return "mps"
    return f"cpu ({torch.get_num_threads()} threads)"


def bitsandbytes_backend() -> str:
    """The backend bitsandbytes will pick, found the way bitsandbytes does without importing it.

    Importing bitsandbytes loads native libraries and logs warnings on some CPUs; its choice rests
    only on torch's build: ROCm torch -> ROCm, a visible CUDA GPU -> CUDA, an Intel XPU -> XPU,
    otherwise CPU (which works without a native library in bitsandbytes >= 0.45).
    """
    import torch

    if getattr(torch.version, "hip", None):
        backend = "ROCm"
    elif torch.cuda.is_available():
        backend = "CUDA"
    elif getattr(torch._C, "_has_xpu", False):
        backend = "XPU"
    else:
        backend = "CPU"
    spec = importlib.util.find_spec("bitsandbytes")
    folder = list(spec.submodule_search_locations or [])[0] if spec else None
    if folder and backend == "CPU":
        has_lib = any(name.startswith("libbitsandbytes_cpu") for name in os.listdir(folder))
        backend = _("CPU (native library found)") if has_lib else _("CPU (pure PyTorch fallback)")
    return backend


# ---------------------------------------------------------------------------- version logic
def parse_version(text: str) -> tuple:
    try:
        from packaging.version import Version

        return Version(text).release
    except Exception:  # packaging missing or an odd string: compare the leading numbers
        parts = []
        for piece in text.split("+")[0].split("."):
            digits = "".join(ch for ch in piece if ch.isdigit())
            if not digits:
                break
            parts.append(int(digits))
        return tuple(parts)


def in_range(found: str, low: str, high: str) -> bool:
    v = parse_version(found)
    return parse_version(low) <= v < parse_version(high)


def spec_of(package: str) -> str:
    low, high, _why = SUPPORTED[package]
    return f">={low},<{high}"


def install_command(package: str) -> str:
    if package == "torch":
        return f"python -m pip install torch=={TORCH_PIN}  (CPU build; on a GPU machine see README 'Real-model mode')"
    if package == "python":
        return "install Python 3.10-3.13, then: rm -rf .venv && make lab"
    return f"python -m pip install '{package}{spec_of(package)}'"


def check_package(package: str, label: str | None = None) -> Check:
    label = label or package
    found = version_of(package)
    low, high, why = SUPPORTED[package]
    if found is None:
        return Check(label, False, _("not installed (needed for {why}; supported {spec})", why=why, spec=spec_of(package)),
                     install_command(package))
    if not in_range(found, low, high):
        return Check(label, False, _("{found} found; supported {spec} (needed for {why})", found=found, spec=spec_of(package), why=why),
                     install_command(package))
    return Check(label, True, f"{found}")


# ---------------------------------------------------------------------------- the checks
def check_python() -> Check:
    found = python_version()
    low, high, _why = SUPPORTED["python"]
    if in_range(found, low, high):
        return Check("Python", True, found)
    return Check("Python", False, _("{found} found; supported {spec}", found=found, spec=spec_of("python")), install_command("python"))


def check_torch() -> Check:
    base = check_package("torch")
    if not base.ok:
        return base
    try:
        device = torch_device()
    except Exception as exc:  # a broken wheel imports badly
        return Check("torch", False, _("{version} installed but `import torch` failed: {error}", version=base.detail, error=exc),
                     install_command("torch"))
    return Check("torch", True, _("{version}, device {device}", version=base.detail, device=device))


def check_bitsandbytes() -> Check:
    base = check_package("bitsandbytes")
    if not base.ok:
        return base
    try:
        backend = bitsandbytes_backend()
    except Exception as exc:
        return Check("bitsandbytes", False, _("{version}, backend unknown ({error})", version=base.detail, error=exc),
                     _("lesson 02 falls back to fp32; to repair: {command}", command=install_command("bitsandbytes")))
    return Check("bitsandbytes", True, _("{version}, backend {backend}", version=base.detail, backend=backend))


def check_widgets() -> Check:
    """ipywidgets and jupyterlab_widgets must come in matching majors (8 <-> 3), or widgets stay blank."""
    for package in ("ipywidgets", "jupyterlab_widgets"):
        single = check_package(package)
        if not single.ok:
            return Check("ipywidgets/jupyterlab_widgets", False, f"{package} {single.detail}", single.fix)
    ipyw, labw = version_of("ipywidgets"), version_of("jupyterlab_widgets")
    wanted = WIDGETS_PAIRS.get(parse_version(ipyw)[0])
    if wanted != parse_version(labw)[0]:
        return Check("ipywidgets/jupyterlab_widgets", False,
                     f"ipywidgets {ipyw} with jupyterlab_widgets {labw}: mismatched (ipywidgets 8 needs "
                     f"jupyterlab_widgets 3); supported ipywidgets{spec_of('ipywidgets')}, "
                     f"jupyterlab_widgets{spec_of('jupyterlab_widgets')}",
                     f"python -m pip install 'ipywidgets{spec_of('ipywidgets')}' "
                     f"'jupyterlab_widgets{spec_of('jupyterlab_widgets')}'")
    return Check("ipywidgets/jupyterlab_widgets", True, _("{ipywidgets} / {labwidgets} (matching)", ipywidgets=ipyw, labwidgets=labw))


def check_ram() -> Check:
    total, available = ram_gib()
    detail = _("{total:.1f} GiB total, {available:.1f} GiB available (need >= {need:.0f} GiB total)",
               total=total, available=available, need=MIN_RAM_GIB)
    if total < MIN_RAM_GIB:
        return Check("RAM", False, detail, _("use a machine with more memory (the course model needs ~1-2 GiB per notebook)"))
    return Check("RAM", True, detail)


def check_disk(path: str) -> Check:
    free = free_disk_gib(path)
    detail = _("{free:.1f} GiB free in the course folder (need >= {need:.0f} GiB)", free=free, need=MIN_FREE_DISK_GIB)
    if free < MIN_FREE_DISK_GIB:
        return Check("disk", False, detail, _("free some space, e.g. `rm -rf runs/` (course outputs, re-creatable)"))
    return Check("disk", True, detail)


# ---------------------------------------------------------------------------- the lock
def lock_path():
    from glmcourse import REPO_ROOT

    return REPO_ROOT / "requirements" / "lock.txt"


def normalize(name: str) -> str:
    """PEP 503 name: ``Jupyter_Server`` and ``jupyter-server`` are one distribution."""
    return re.sub(r"[-_.]+", "-", name).lower()


def read_lock(path) -> dict[str, str]:
    """{name: version} for every pin of the lock whose environment marker holds on this machine."""
    from packaging.requirements import Requirement

    pins = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.split(" #")[0].strip()
        if not line or line.startswith(("#", "-")):
            continue
        req = Requirement(line)
        if req.marker is not None and not req.marker.evaluate():
            continue
        (spec,) = req.specifier  # the lock holds only name==version lines
        pins[normalize(req.name)] = spec.version
    return pins


def installed_versions() -> dict[str, str]:
    """{name: version} of every distribution in this environment (what ``pip list`` shows)."""
    found = {}
    for dist in importlib.metadata.distributions():
        name = dist.metadata["Name"]
        if name:
            found[normalize(name)] = dist.version
    return found


def lock_differences(pins: dict[str, str], installed: dict[str, str]) -> list[str]:
    """One line per difference between the lock and this environment (empty when they agree)."""
    problems = []
    for name, wanted in sorted(pins.items()):
        found = installed.get(name)
        if found is None:
            problems.append(f"{name}: missing (lock: {wanted})")
        elif found != wanted:
            problems.append(f"{name}: {found} installed, lock: {wanted}")
    cuda_torch = "+cpu" not in installed.get("torch", "+cpu")
    for name, found in sorted(installed.items()):
        if name in pins or name in VENV_OWN or name in {"torch", "glmcourse"}:
            continue
        if cuda_torch and name.startswith(TORCH_RUNTIME_PREFIXES):
            continue
        problems.append(f"{name}: {found} installed, not in the lock")
    return problems


def check_lock() -> Check:
    path = lock_path()
    if not path.exists():
        return Check("lock", True, _("no requirements/lock.txt beside the package (not a course checkout): skipped"))
    problems = lock_differences(read_lock(path), installed_versions())
    if not problems:
        return Check("lock", True, _("every installed version is the lock's (requirements/lock.txt)"))
    extra = [p.split(":")[0] for p in problems if p.endswith("not in the lock")]
    fix = "python -m pip install -r requirements/lock.txt"
    if extra:
        fix += " && python -m pip uninstall -y " + " ".join(extra)
    return Check("lock", False, _("{count} difference(s) from requirements/lock.txt: {differences}", count=len(problems),
                                  differences="; ".join(problems)), fix)


def run_checks() -> list[Check]:
    from glmcourse import REPO_ROOT

    return [
        check_python(),
        check_torch(),
        check_package("transformers"),
        check_package("peft"),
        check_package("accelerate"),
        check_package("datasets"),
        check_bitsandbytes(),
        check_widgets(),
        check_package("matplotlib"),
        check_package("mplfonts"),
        check_package("nbval"),
        check_package("gradio"),
        check_lock(),
        check_ram(),
        check_disk(str(REPO_ROOT)),
    ]


def build_parser():
    from glmcourse.cli import CourseParser

    return CourseParser(prog="python -m glmcourse doctor", description="Check the environment: [OK]/[FAIL] lines, "
                        "each FAIL with its fix; exit 1 on any FAIL.")


def main(argv=None) -> int:
    build_parser().parse_args(argv)
    checks = run_checks()
    for check in checks:
        print("\n".join(check.lines()))
    failed = [c.name for c in checks if not c.ok]
    if failed:
        print("\n" + _("{count} check(s) failed: {names}. Run each fix above, then `python -m glmcourse doctor` again.",
                        count=len(failed), names=", ".join(failed)))
        return 1
    print("\n" + _("All {count} checks passed.", count=len(checks)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
