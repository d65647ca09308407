"""One segmentation/attack job: preprocessing, inference, padding to the network's multiple, the memory plan."""
