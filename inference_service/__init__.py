"""Inference service: segmentation proposals and restoration jobs from Kafka, images in the object store."""
