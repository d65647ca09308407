"""One segmentation/attack job: preprocessing, inference, the memory plan; its data (records), where
its labels changed (label_changes) and its progress lines (progress). Padding to the network's
multiple lives in attacks/padding.py, which the attacks need on their own."""
