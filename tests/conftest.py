# The fixture notebooks are deliberately broken: never collect them (e.g. under --nbval).
collect_ignore_glob = ["fixtures/*"]
