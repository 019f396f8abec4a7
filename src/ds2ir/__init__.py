"""ds2ir: reproducible DeepSpeech checkpoint -> OpenVINO IR builds, proven against TensorFlow."""

__version__ = "0.1.0"
