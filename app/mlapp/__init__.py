"""mlapp: the trainer and the model server that mlstack builds into its images.

The trainer (``python -m mlapp.train``) needs PyTorch; the server
(``python -m mlapp.serve``) must import neither torch nor anything that pulls
it in, so modules shared by both (``store``, ``preprocess``, ``settings``) stay
free of torch imports.
"""
