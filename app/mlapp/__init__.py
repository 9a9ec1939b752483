"""mlapp: the model server and the publisher that mlstack builds into its server image.

Neither imports torch, nor anything that pulls it in: the server image has none. Trainers are the
team's own, under the trainer contract (docs/trainer-contract.md); ours is examples/digits.
"""
