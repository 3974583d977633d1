"""Every committed notebook is executed, in order, error-free, portable and metadata-clean.

The same checker backs ``python -m glmcourse.tools.nbtools check``; the fixture notebooks under
tests/fixtures/ prove it catches each kind of problem.
"""
from __future__ import annotations

import copy
from pathlib import Path

import pytest

from glmcourse.tools import nbtools

REPO = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).resolve().parent / "fixtures"
WORKSPACE_MANIFEST = ".glmcourse-workspace.json"  # a learner's workspace (glmcourse.workspace): not the course's
COURSE_NOTEBOOKS = sorted(p for p in (REPO / "notebooks").rglob("*.ipynb")
                          if ".ipynb_checkpoints" not in p.parts
                          and not any((folder / WORKSPACE_MANIFEST).exists() for folder in p.parents))


@pytest.mark.parametrize("path", COURSE_NOTEBOOKS, ids=lambda p: str(p.relative_to(REPO)))
def test_course_notebook_is_clean(path):
    problems = nbtools.check_paths([path])
    english = path.parent.parent / path.name if path.parent.name == "zh" else path
    # A learner keeps their copy first (the hint); an author changing the course re-runs the lesson.
    fix = ("Fix (changing the course): GLMCOURSE_FAST=1 .venv/bin/python -m glmcourse.tools.nbtools run "
           + str(english.relative_to(REPO))
           + ("; then .venv/bin/python -m glmcourse.tools.nbtools translate" if english != path else ""))
    assert not problems, "\n".join(problems) + "\n" + nbtools.RESTORE_HINT + "\n" + fix


def fixture(name):
    return nbtools.read_notebook(FIXTURES / name)


def test_clean_fixture_passes():
    assert nbtools.check_notebook(fixture("clean.ipynb")) == []


def test_error_output_is_reported():
    problems = nbtools.check_notebook(fixture("error_output.ipynb"), "error_output.ipynb")
    assert len(problems) == 1
    assert "cell 3" in problems[0] and "error output ZeroDivisionError" in problems[0]


def test_absolute_path_in_output_is_reported():
    problems = nbtools.check_notebook(fixture("absolute_path.ipynb"), "absolute_path.ipynb")
    assert len(problems) == 1
    assert "absolute path" in problems[0] and "/home/learner" in problems[0]


@pytest.mark.parametrize("folder", ["/root/", "/tmp/", "/work/", "/home/"])
def test_every_machine_folder_is_caught(folder):
    nb = fixture("clean.ipynb")
    nb.cells[1].outputs[0]["text"] = f"saved to {folder}x/adapter\n"
    assert any("absolute path" in p for p in nbtools.check_notebook(nb))


def test_relative_paths_and_images_are_fine():
    nb = fixture("clean.ipynb")
    nb.cells[1].outputs[0]["text"] = "saved to runs/tmp/adapter and ../data/work/x\n"
    nb.cells[2].outputs[0]["data"]["image/png"] = "iVBORw0/tmp/AAA"  # base64 may contain anything
    assert nbtools.check_notebook(nb) == []


def test_wrong_kernel_and_extra_metadata_are_reported():
    nb = fixture("clean.ipynb")
    nb.metadata["kernelspec"] = {"name": "glm-env", "display_name": "glm", "language": "python"}
    nb.metadata["widgets"] = {"state": {}}
    nb.cells[1].metadata["collapsed"] = True
    problems = "\n".join(nbtools.check_notebook(nb))
    assert "kernelspec" in problems and "glm-env" in problems
    assert "extra notebook metadata ['widgets']" in problems
    assert "cell 1: extra cell metadata ['collapsed']" in problems


def test_unexecuted_and_out_of_order_cells_are_reported():
    nb = fixture("clean.ipynb")
    swapped = copy.deepcopy(nb)
    swapped.cells[1].execution_count, swapped.cells[2].execution_count = 2, 1
    assert any("execution count 2, expected 1" in p for p in nbtools.check_notebook(swapped))
    nb.cells[2].execution_count = None
    nb.cells[2].outputs = []
    assert any("cell 2: code cell was not executed" in p for p in nbtools.check_notebook(nb))


def test_clean_repairs_metadata_and_counts():
    nb = fixture("clean.ipynb")
    nb.metadata["kernelspec"]["display_name"] = "Python 3 (ipykernel)"
    nb.metadata["language_info"]["version"] = "3.11.7"
    nb.cells[1].metadata.update({"scrolled": True, "tags": ["keep"]})
    nb.cells[1].execution_count, nb.cells[2].execution_count = 7, 9
    nbtools.clean_notebook(nb)
    assert nbtools.check_notebook(nb) == []
    assert nb.cells[1].metadata == {"tags": ["keep"]}
    assert [nb.cells[1].execution_count, nb.cells[2].execution_count] == [1, 2]
    assert nb.cells[2].outputs[0]["execution_count"] == 2


def test_check_command_exits_nonzero_on_a_dirty_notebook(capsys):
    assert nbtools.main(["check", str(FIXTURES / "clean.ipynb")]) == 0
    assert nbtools.main(["check", str(FIXTURES / "clean.ipynb"), str(FIXTURES / "error_output.ipynb")]) == 1
    assert "[FAIL]" in capsys.readouterr().out


def test_course_run_times_notebooks_into_a_scratch_copy(tmp_path, capsys):
    """`make course`'s engine: executes, writes elsewhere, records wall time and the kernel's RSS."""
    import json
    import shutil

    src = tmp_path / "nbs"
    src.mkdir()
    shutil.copy(FIXTURES / "clean.ipynb", src / "01_demo.ipynb")
    shutil.copy(FIXTURES / "error_output.ipynb", src / "02_broken.ipynb")  # its 1/0 cell really fails
    before = (src / "01_demo.ipynb").read_bytes()
    rows = nbtools.run_course(src, tmp_path / "out", tmp_path / "times.json", timeout=120)
    assert [(r["notebook"], r["ok"]) for r in rows] == [("01_demo.ipynb", True), ("02_broken.ipynb", False)]
    assert (src / "01_demo.ipynb").read_bytes() == before  # the committed copy is never touched
    executed = nbtools.read_notebook(tmp_path / "out" / "01_demo.ipynb")
    assert nbtools.check_notebook(executed) == []
    assert not (tmp_path / "out" / "02_broken.ipynb").exists()
    saved = json.loads((tmp_path / "times.json").read_text())
    first = saved["notebooks"][0]
    assert first["wall_s"] > 0 and first["peak_rss_mib"] > 10  # a Python kernel alone is tens of MiB
    table = capsys.readouterr().out
    assert "wall time (s)" in table and "peak RSS (MiB)" in table and "FAILED" in table
    # Re-measuring one notebook keeps the other's row.
    nbtools.run_course(src, tmp_path / "out", tmp_path / "times.json", timeout=120, only=["01_demo.ipynb"])
    again = json.loads((tmp_path / "times.json").read_text())["notebooks"]
    assert [(r["notebook"], r["ok"]) for r in again] == [("01_demo.ipynb", True), ("02_broken.ipynb", False)]


def test_what_jupyterlab_writes_on_open_and_save_passes():
    """Opening a lesson in JupyterLab renames the kernel and fills language_info; that must stay clean."""
    nb = fixture("clean.ipynb")
    nb.metadata["kernelspec"]["display_name"] = "Python 3 (ipykernel)"
    nb.metadata["language_info"] = {"codemirror_mode": {"name": "ipython", "version": 3}, "file_extension": ".py",
                                    "mimetype": "text/x-python", "name": "python", "nbconvert_exporter": "python",
                                    "pygments_lexer": "ipython3", "version": "3.11.7"}
    assert nbtools.check_notebook(nb) == []
    nb.metadata["language_info"]["widgets"] = {}
    assert any("language_info" in p for p in nbtools.check_notebook(nb))


def test_committed_kernelspec_is_what_jupyterlab_writes():
    assert nbtools.KERNELSPEC["display_name"] == "Python 3 (ipykernel)"
    from jupyter_client.kernelspec import KernelSpecManager

    assert KernelSpecManager().get_kernel_spec("python3").display_name == nbtools.KERNELSPEC["display_name"]


def test_a_learner_run_notebook_gets_the_restore_hint(tmp_path, capsys):
    nb = fixture("clean.ipynb")
    nb.cells[1].execution_count = 7  # run out of order in the lab
    path = tmp_path / "run_by_a_learner.ipynb"
    nbtools.write_notebook(nb, path)
    assert nbtools.main(["check", str(path)]) == 1
    out = capsys.readouterr().out
    assert "execution count 7" in out and "workspace work/" in out
    # The learner's copy is kept before anything is restored, and only that one file is restored.
    assert out.index("cp notebooks/") < out.index("git checkout -- notebooks/01_")
    assert "git checkout notebooks/" not in out and "runs/" not in out
