"""Data for SATORI training: a synthetic sample set, streaming readers, validation, and the
conversion of VQA-Verify-shaped data into ms-swift GRPO JSONL (`prepare`) and its statistics
(`inspect`). Everything here is plain Python with no CLI dependency.
"""
