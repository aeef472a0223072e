"""Thin Typer commands. Each module has `register(app)` and imports heavy libraries lazily."""
