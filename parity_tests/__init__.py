"""Parity between the PyTorch port and TensorFlow, and the data that judges both."""
