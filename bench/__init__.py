"""Benchmarks: ``python -m bench.<name>``; each prints its figures (see the README).

Like the ``creditflow`` command, every benchmark runs with ``NUMPY_MADVISE_HUGEPAGE=0``
(set here, before NumPy is imported): NumPy's transparent huge pages made the panel
build's system time larger than its user time on this machine.
"""

import os

os.environ.setdefault("NUMPY_MADVISE_HUGEPAGE", "0")
