"""medssr-hub: a Hugging Face Hub-native dataset and model factory for MedSSR."""

__version__ = "0.1.0"
