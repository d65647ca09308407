"""One segmentation/attack job: preprocessing, inference, the memory plan (padding to the
network's multiple lives in attacks/padding.py, which the attacks need on their own)."""
