"""A/B experiments (DESIGN §8): definitions, sticky GrowthBook-compatible assignment, exposure
logging, and the analysis that answers whether a variant changed task time and conversion.

Heavy modules (pandas, scipy) are imported by the modules that need them, not here, so the
collector can mount the assignment router without paying for the analysis stack.
"""
