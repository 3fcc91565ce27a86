"""Pure functions over results (statistics, compare, tuning, budgets, trends); never torch."""
