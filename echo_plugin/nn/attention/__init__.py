"""Attention kernels and variants."""
