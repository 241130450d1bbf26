"""The stages of the attribution pipeline, one module each: record, compute, tables.

Read in pipeline order: tokenize, precompute, targets, rows, influence, prune, export; then
validate, which only the pipeline variant VALIDATE_PIPELINE runs. Each module ends with its
`STAGE` declaration; `tasks/pipeline.py` lists them.
"""
