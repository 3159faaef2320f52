"""R-CNN (Girshick et al. 2014): ``regions`` (selective-search windows, labels by IoU, warps),
``svm`` (per-class linear SVMs with hard negatives), ``detector`` (the test-time network the
speed suite times), ``system`` (the window network, its fine-tuning batches, window
classifiers, NMS and VOC07 mAP; repro.train.rcnn fine-tunes and measures)."""
