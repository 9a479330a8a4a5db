"""Evaluation: question sets and BEIR folders run through the core, measured and reported."""
