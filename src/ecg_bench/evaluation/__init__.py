"""Generation, metrics, statistics, signal ablation, reports."""
