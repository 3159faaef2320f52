"""Official evaluation protocols: PASCAL VOC AP, COCO AP (pycocotools), ImageNet top-k error,
weight loading and the statistics used to judge repeated runs.

Every module imports its heavy dependencies (torch, pycocotools) inside functions, so importing
this package stays cheap for the CLI.
"""
