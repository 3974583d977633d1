# The Chinese notebooks are generated from the English ones (python -m glmcourse.tools.nbtools translate) and
# executed in Chinese (python -m glmcourse.tools.nbtools run --edition zh notebooks/0*.ipynb); their first cell
# sets GLMCOURSE_LANG=zh, so nbval's run prints the same Chinese as the committed outputs, and their runs go to
# runs/zh/ (glmcourse.RUNS_DIR), apart from the English notebooks' under make test's two workers. They run
# under nbval in `make test` like the English ones; tests/test_notebook_hygiene.py, tests/test_translation.py
# and tests/test_zh_outputs.py check them too. See i18n/README.md.
