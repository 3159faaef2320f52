"""Accuracy reproduction: train by a paper's recipe (optimizer, schedule, augmentation) on real
data and evaluate by its protocol (fit, schedules, augment, datasets; the suite ties them up)."""
