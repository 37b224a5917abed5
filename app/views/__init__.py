"""Dashboard pages: one file per page, each defining ``render(ctx)`` (see app/common.py)."""
