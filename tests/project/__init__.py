"""The repository's own files: the project, its stack files and README, the workflows, the policy pack."""
