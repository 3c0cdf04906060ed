"""Funnelstream: clickstream and funnel analytics for an AI image-editing service."""

__version__ = "0.1.0"
