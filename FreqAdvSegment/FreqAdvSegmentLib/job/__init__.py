"""One segmentation/attack job: preprocessing, inference, padding to the network's multiple, the memory plan;
its data (records), where its labels changed (label_changes) and its progress lines (progress)."""
