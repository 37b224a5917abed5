"""Dashboard pages: one file per page, render only (``render(ctx)``; see app/state.py)."""
