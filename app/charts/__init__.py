"""Plotly figure builders, one module per page; ``style`` holds the colours, ``style()`` and ``show()``."""
