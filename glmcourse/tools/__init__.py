"""Authoring and instructor tools: what builds, checks, translates, grades and publishes the course.

No lesson notebook imports these modules; learners never need to read them. Each is a command
(``python -m glmcourse.tools.NAME``) or a part of one:

* ``nbtools``: run, clean and check the notebooks; ``make course``; update-catalogs and translate;
* ``notebook_io``: the one notebook reader and writer, and the list of lesson notebooks;
* the Chinese edition, in the order a text travels: ``markdown_split`` (a notebook's translatable
  units), ``catalogs`` (the lessons' gettext catalogs), ``template_catalogs`` (the checkers' and the
  figures' catalogs), ``catalog_checks`` (what a translation must keep), ``editions`` (``notebooks/zh/``);
* ``grade``: ``make grade``; ``site``: ``make site``;
* ``make_data``: writes ``data/``; ``build_course_model``: rebuilds ``glmcourse/course_model/``.
"""
