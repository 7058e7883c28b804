"""Aggregation of scores into tidy tables, and the figures drawn from them."""
