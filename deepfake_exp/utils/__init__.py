"""Small shared helpers: atomic writes, run metadata."""
