"""The speed suite: the papers' test-time claims, timed on this machine.

``pipelines``: what is timed (R-CNN, Fast R-CNN, forward passes of registered models);
``groups``: which claims are measurable and which are timed together; ``suite``: the timing run
(one task per group); ``verdicts``: values, verdicts and notes; ``settings``: the knobs.
"""
