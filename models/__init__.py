"""Model builders and data loading for the training job (`train.py`)."""
