"""Serving: launch and supervise engines; log phases; plan vs actual."""
