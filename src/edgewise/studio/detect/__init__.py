"""Object detection in the studio: annotated datasets and their formats, the detector, its
training, COCO metrics and export. The in-memory dataset is `annotations.DetectionSet`."""
