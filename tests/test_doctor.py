"""The doctor names the package, the version found, the range supported and the fix (docs/failure-catalog.md#f01-library-versions)."""
from __future__ import annotations

import importlib.metadata
import re
import tomllib
from pathlib import Path

import pytest

from glmcourse import doctor

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def healthy(monkeypatch):
    """A machine with every package at its lowest supported version and plenty of RAM and disk."""
    versions = {name: low for name, (low, _, _) in doctor.SUPPORTED.items()}
    versions["jupyterlab_widgets"] = "3.0.9"
    monkeypatch.setattr(doctor, "version_of", lambda name: versions.get(name))
    monkeypatch.setattr(doctor, "python_version", lambda: "3.11.7")
    monkeypatch.setattr(doctor, "ram_gib", lambda: (16.0, 12.0))
    monkeypatch.setattr(doctor, "free_disk_gib", lambda path: 50.0)
    monkeypatch.setattr(doctor, "torch_device", lambda: "cpu (2 threads)")
    monkeypatch.setattr(doctor, "bitsandbytes_backend", lambda: "CPU")
    monkeypatch.setattr(doctor, "read_lock", lambda path: {})
    monkeypatch.setattr(doctor, "installed_versions", lambda: {})
    return versions


def run(capsys):
    code = doctor.main([])
    return code, capsys.readouterr().out


def test_healthy_machine_passes(healthy, capsys):
    code, out = run(capsys)
    assert code == 0
    assert "[FAIL]" not in out
    for label in ("Python", "torch", "transformers", "peft", "accelerate", "datasets", "bitsandbytes",
                  "ipywidgets/jupyterlab_widgets", "matplotlib", "nbval", "RAM", "disk"):
        assert re.search(rf"^\[OK\] {re.escape(label)}:", out, re.M), f"no [OK] line for {label}"
    assert "device cpu" in out and "backend CPU" in out


def test_missing_package_fails_with_install_command(healthy, capsys):
    del healthy["peft"]
    code, out = run(capsys)
    assert code == 1
    line = next(l for l in out.splitlines() if l.startswith("[FAIL] peft"))
    assert "not installed" in line and ">=0.11,<1" in line
    assert "fix: python -m pip install 'peft>=0.11,<1'" in out


def test_out_of_range_version_names_found_supported_and_fix(healthy, capsys):
    healthy["transformers"] = "4.30.2"
    code, out = run(capsys)
    assert code == 1
    line = next(l for l in out.splitlines() if l.startswith("[FAIL] transformers"))
    spec = doctor.spec_of("transformers")
    assert spec.startswith(">=4.45,<")
    assert "4.30.2 found" in line and f"supported {spec}" in line
    assert f"fix: python -m pip install 'transformers{spec}'" in out
    assert "1 check(s) failed: transformers" in out


def test_version_above_the_range_fails_too(healthy, capsys):
    healthy["peft"] = "1.2.0"
    code, out = run(capsys)
    assert code == 1 and "[FAIL] peft: 1.2.0 found; supported >=0.11,<1" in out


def test_mismatched_widget_packages_fail(healthy, capsys):
    healthy["ipywidgets"], healthy["jupyterlab_widgets"] = "8.1.2", "1.1.7"
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(doctor.SUPPORTED, "jupyterlab_widgets", ("1.0", "4", "test: let 1.x through the range"))
        code, out = run(capsys)
    assert code == 1
    assert "ipywidgets 8.1.2 with jupyterlab_widgets 1.1.7: mismatched" in out
    assert "fix: python -m pip install 'ipywidgets>=8.1,<9'" in out


def test_missing_torch_suggests_the_cpu_pin(healthy, capsys):
    del healthy["torch"]
    code, out = run(capsys)
    assert code == 1
    assert f"pip install torch=={doctor.TORCH_PIN}" in out


def test_old_python_low_ram_and_full_disk_fail(healthy, monkeypatch, capsys):
    monkeypatch.setattr(doctor, "python_version", lambda: "3.8.10")
    monkeypatch.setattr(doctor, "ram_gib", lambda: (2.0, 1.0))
    monkeypatch.setattr(doctor, "free_disk_gib", lambda path: 0.3)
    code, out = run(capsys)
    assert code == 1
    assert "[FAIL] Python: 3.8.10 found; supported >=3.10,<3.14" in out
    assert "[FAIL] RAM:" in out and "[FAIL] disk:" in out
    assert out.count("       fix: ") == 3


def test_every_fail_prints_a_fix(healthy, capsys):
    for name in list(healthy):
        healthy[name] = "0.0.1"
    code, out = run(capsys)
    lines = out.splitlines()
    fails = [i for i, l in enumerate(lines) if l.startswith("[FAIL]")]
    assert code == 1 and len(fails) >= 10
    assert all(lines[i + 1].startswith("       fix: ") for i in fails)


def test_default_lookup_reads_installed_metadata():
    assert doctor.version_of("pytest") == importlib.metadata.version("pytest")
    assert doctor.version_of("surely-not-a-real-package-xyz") is None


def test_version_ranges_compare_numerically():
    assert doctor.in_range("4.45.0", "4.45", "6")
    assert doctor.in_range("2.13.0+cpu", "2.1", "3")
    assert doctor.in_range("4.100.1", "4.45", "6")  # not a string comparison
    assert not doctor.in_range("4.9.0", "4.45", "6")
    assert not doctor.in_range("6.0.0", "4.45", "6")


def test_pyproject_lower_bounds_match_supported():
    """SUPPORTED is the one place for ranges; pyproject's lower bounds must not drift from it."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    requirements = project["dependencies"] + [r for extra in project["optional-dependencies"].values() for r in extra]
    bounds = {}
    for req in requirements:
        m = re.match(r"^([A-Za-z0-9_.-]+)\s*>=\s*([0-9.]+)", req)
        if m:
            bounds[m.group(1).lower().replace("-", "_")] = m.group(2)
    for name, (low, _, _) in doctor.SUPPORTED.items():
        if name == "python":
            assert project["requires-python"] == f">={low}"
        else:
            assert bounds.get(name) == low, f"pyproject.toml has {name}>={bounds.get(name)}, doctor.SUPPORTED says {low}"


def test_command_line_entry_point(healthy, capsys):
    from glmcourse.__main__ import main

    assert main(["doctor"]) == 0
    assert "[OK] torch" in capsys.readouterr().out
    assert main(["no-such-command"]) == 2


def test_environment_yml_installs_the_lock_and_the_torch_pin():
    """conda users get exactly the pip set-up's versions: the lock, the same torch pin, Python 3.11."""
    import yaml

    env = yaml.safe_load((REPO / "environment.yml").read_text())
    conda = [d for d in env["dependencies"] if not isinstance(d, dict)]
    (pip,) = [d["pip"] for d in env["dependencies"] if isinstance(d, dict)]
    assert conda == ["python=3.11", "pip"], "packages belong in the lock, not in conda's list"
    assert "-r requirements/lock.txt" in pip and "-e ." in pip
    assert f"torch=={doctor.TORCH_PIN}" in pip


def test_makefile_installs_the_torch_pin_the_doctor_suggests():
    makefile = (REPO / "Makefile").read_text()
    assert re.search(rf"^TORCH_VERSION := {re.escape(doctor.TORCH_PIN)}$", makefile, re.M)
