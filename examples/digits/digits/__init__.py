"""The digits example: a small PyTorch CNN on scikit-learn's 8x8 digits, one trainer that keeps mlstack's
trainer contract (docs/trainer-contract.md) while importing nothing of mlstack's.

``python -m digits`` is the image's entrypoint; ``python -m digits.train`` the trainer itself.
"""
