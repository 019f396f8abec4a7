"""The model and speech code both sides share: shapes and graph names, targets, artifact layout, audio,
features, decoding, comparison. Importable on Python 3.7 without TensorFlow or OpenVINO."""
