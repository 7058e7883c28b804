"""RULER synthetic tasks (NIAH, variable tracking, common words)."""
