"""ops/experiments"""
