"""The freeze image's code: checkpoints, DeepSpeech's inference graph, exporters, training (TF 1.15, Python 3.7)."""
