"""Datasets (tfds builders, VOC-format folders) and the input pipeline."""
