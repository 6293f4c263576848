"""Circuit discovery: tasks, ground truths, baselines and the discrete-SAE finder."""
