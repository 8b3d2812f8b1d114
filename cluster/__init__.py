"""Ray orchestration of evaluation runs: plan, worker, writer, driver, reducer.

``run_eval(RunConfig)`` runs (or resumes) a run; ``reduce_results(dir)`` scores it; ``python -m
cluster.job`` does both from the command line or under ``ray job submit``. Imports ray,
``laserkv`` and ``evals``; holds no model math.
"""
