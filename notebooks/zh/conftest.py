# The Chinese notebooks are generated from the executed English ones (python -m glmcourse.nbtools
# translate): same code, outputs copied. They are never executed separately, so nbval skips them;
# tests/test_notebook_hygiene.py and tests/test_translation.py still check them. See i18n/README.md.
collect_ignore_glob = ["*.ipynb"]
