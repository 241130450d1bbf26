"""The stages of the attribution pipeline, one module each: record, compute, tables.

Read in pipeline order: tokenize, precompute, targets, rows, influence, prune, export; then
validate, which runs only when a run asks for it (`validate` set). Each module ends with its
`STAGE` declaration; `tasks/pipeline.py` lists them.
"""
