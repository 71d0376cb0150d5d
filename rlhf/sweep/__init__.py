"""``rlhf sweep``: a grid of runs over a base recipe (spec.py), run and resumed run by run
(runner.py), aggregated over seeds and problems (stats.py) into tables and plots (report.py)."""
