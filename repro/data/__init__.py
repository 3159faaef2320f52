"""Datasets: readers for ImageNet-1k, PASCAL VOC and COCO, verification, synthetic sets.

Heavy imports (torch, PIL, pycocotools) live inside functions so the CLI starts quickly.
"""
