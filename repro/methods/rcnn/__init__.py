"""R-CNN (Girshick et al. 2014): ``regions`` (selective-search windows, labels by IoU, warps),
``svm`` (per-class linear SVMs with hard negatives), ``detector`` (the test-time network the
speed suite times), ``pipeline`` (fine-tuning, window classifiers, NMS and VOC07 mAP)."""
