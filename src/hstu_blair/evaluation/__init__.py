"""Stage: full-ranking evaluation, metrics, and statistics over seeds."""
