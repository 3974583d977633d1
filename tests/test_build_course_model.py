"""build_course_model refuses bad flags and an unusable --out before any training (issue: hostile input)."""
import pytest

from glmcourse.tools import build_course_model


@pytest.mark.parametrize("argv,expected", [
    (["--threads", "0"], "--threads"), (["--sft_steps", "-3"], "--sft_steps"), (["--seed", "-1"], "--seed"),
    (["--pretrain_steps", "0", "--sft_steps", "0"], "at least 1"), (["--lr", "nan"], "--lr"),
])
def test_bad_flags_are_refused_at_start(argv, expected, capsys):
    with pytest.raises(SystemExit) as stop:
        build_course_model.main(argv)
    assert stop.value.code == 2 and expected in capsys.readouterr().err


def test_an_out_under_a_file_is_refused_before_training(tmp_path, capsys, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    trained = []
    monkeypatch.setattr(build_course_model, "train", lambda *a, **k: trained.append(1))
    with pytest.raises(SystemExit) as stop:
        build_course_model.main(["--out", str(blocker / "model")])
    assert stop.value.code == 2 and "is a file" in capsys.readouterr().err and not trained
