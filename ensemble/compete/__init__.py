"""A whole competition in one command: duplicates, models, tuning, vote, report (budgets or --time)."""
