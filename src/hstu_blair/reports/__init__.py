"""Stage: experiment grids and paper-style reports (tables, significance, plots)."""
