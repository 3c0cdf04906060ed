"""Data-quality checks of the warehouse: the check table (``checks``), the runner that records them
in ``qa_results`` (``runner``), and reading through ``warehouse serve`` (``remote``).

Invariant: every check is one named SQL file ``clickhouse/queries/qa_<name>.sql``; nothing here
writes anything but ``qa_results``.
"""
