from pathlib import Path

# The fixture notebooks are deliberately broken: never collect them (e.g. under --nbval).
collect_ignore_glob = ["fixtures/*"]

# `make test` spreads whole files over two workers (pytest-xdist --dist loadfile --no-loadscope-reorder) in the
# order below: the slowest files start first, so at the end the short ones fill both workers instead of one
# worker finishing a long file alone. Lesson 05 of each edition comes before its lesson 07 (and 06, collected
# late): those reuse the adapter 05 trains (lesson_runs.ensure_adapter). The two 05s start first, one per worker;
# xdist hands a worker its next file only when its current one is down to its last two tests, so a 07 starts after
# a whole 05 has run, and reaches its LoRA cell (about 40 s in) long after the other 05's training cell (about 20 s
# into that notebook). A file not listed keeps its place after these; the order within a file never changes.
SLOWEST_FIRST = ("notebooks/05_lora_finetuning.ipynb", "notebooks/zh/05_lora_finetuning.ipynb",
                 "notebooks/07_ptuning_v2.ipynb", "tests/test_lab_browser.py", "notebooks/zh/07_ptuning_v2.ipynb",
                 "tests/test_grade.py", "tests/test_thudm_path.py", "tests/test_finetune.py", "tests/test_site.py")
REPO = Path(__file__).resolve().parent.parent


def pytest_collection_modifyitems(session, config, items):
    rank = {name: place for place, name in enumerate(SLOWEST_FIRST)}

    def place(item):
        path = Path(str(item.path)).resolve()
        return rank.get(path.relative_to(REPO).as_posix() if path.is_relative_to(REPO) else "", len(rank))

    items.sort(key=place)  # stable: each file's own order is kept
