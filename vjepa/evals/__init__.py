"""Frozen evaluation: attentive and linear probes (probe.py), AVA detection (detect.py) and its mAP
(ava_eval.py), what they share (frozen.py), and paired statistics over clips (stats.py)."""
