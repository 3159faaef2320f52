"""The papers' methods beyond a network: YOLO v1/v2 targets, losses and decoding; R-CNN's
regions, SVMs, test-time network and training pipeline (``rcnn``); Fast R-CNN at test time;
selective search and RPN proposals; DeCAF's transfer protocol; detection and its scoring."""
