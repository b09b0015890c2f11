"""jobgate's benchmark suite: `python -m bench` measures jobgate and its baselines in one run.

See bench/README.md for what each figure means and how it is measured.
"""
