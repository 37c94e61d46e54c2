"""The paper's numbers, for the report's "paper" columns. Sources: the appendix (Tables 5-15) and
the official repository's README (frozen-probe results of the released models). Accuracies in %.
"""

# Official README, frozen attentive probes of the released models (16x8x3 K400, 16x2x3 SSv2).
FROZEN = {
    "ViT-L/16 224": {"k400": 80.8, "ssv2": 69.5, "in1k": 74.8, "places205": 60.3, "inat21": 67.8},
    "ViT-H/16 224": {"k400": 82.0, "ssv2": 71.4, "in1k": 75.9, "places205": 61.7, "inat21": 67.9},
    "ViT-H/16 384": {"k400": 81.9, "ssv2": 72.2, "in1k": 77.4, "places205": 62.8, "inat21": 72.6},
}

# Table 9: linear vs attentive probes (K400, SSv2).
TABLE9 = {
    "VideoMAE ViT-L/16": {"k400": (52.5, 77.6), "ssv2": (41.3, 61.2)},
    "V-JEPA ViT-L/16": {"k400": (56.7, 79.1), "ssv2": (50.1, 67.1)},
}

# Table 10: linear vs attentive probes of image models run frame by frame.
TABLE10 = {
    "DINOv2 ViT-g/14": {
        "k400": (78.4, 84.4),
        "ssv2": (38.3, 50.0),
        "in1k": (86.5, 86.2),
        "places205": (67.5, 68.4),
        "inat21": (85.7, 88.8),
    },
    "OpenCLIP ViT-G/14": {
        "k400": (78.3, 83.3),
        "ssv2": (35.8, 39.0),
        "in1k": (86.2, 85.3),
        "places205": (69.8, 70.2),
        "inat21": (76.0, 83.6),
    },
}

# Table 11: temporal coverage on K400 (1 clip vs 8 clips).
TABLE11 = {
    "VideoMAE ViT-L/16": (69.4, 77.6),
    "V-JEPA ViT-L/16": (72.3, 79.1),
    "V-JEPA ViT-H/16 384": (75.8, 82.0),
}

# Table 12: samples seen during pretraining (millions).
TABLE12 = {
    "OpenCLIP ViT-G/14 (LAION-2B)": 39000,
    "DINOv2 ViT-g/14 (LVD 142M)": 1900,
    "VideoMAEv2 ViT-g/14 (UnlabeledHybrid)": 1600,
    "V-JEPA ViT-H/16 384 (VideoMix2M)": 210,
}

# Table 13: masking ratio (K400 linear-probe accuracy, ViT-B/16 on K400), keyed by
# (average temporal depth %, average spatial size %) -> (block size px, frames per block, blocks, acc).
TABLE13 = {
    (100, 25): (112, 16, 1, 0.23),
    (100, 50): (160, 16, 1, 0.31),
    (100, 75): (192, 16, 1, 0.44),
    (100, 90): (176, 16, 2, 0.50),
    (100, 95): (192, 16, 2, 0.47),
    (75, 25): (112, 12, 1, 0.10),
    (75, 50): (160, 12, 1, 0.14),
    (75, 75): (192, 12, 1, 0.16),
    (75, 90): (176, 12, 2, 0.22),
    (75, 95): (192, 12, 2, 0.21),
    (50, 25): (112, 8, 1, 0.04),
    (50, 50): (160, 8, 1, 0.11),
    (50, 75): (192, 8, 1, 0.13),
    (50, 90): (176, 8, 2, 0.12),
    (50, 95): (192, 8, 2, 0.14),
}

# Table 14: block spatial size at a ~75% spatial masking ratio: block px -> (blocks per mask, acc).
TABLE14 = {64: (16, 0.49), 96: (8, 0.50), 128: (6, 0.49), 160: (2, 0.48), 192: (1, 0.47)}

# Table 15: masks per sample (160x160 blocks, 2 per mask): masks -> acc.
TABLE15 = {1: 0.50, 2: 0.55, 3: 0.55}

# Table 5: pretraining hyper-parameters (ViT-L/16 224 column).
TABLE5 = {
    "resolution": 224,
    "num_frames": 16,
    "temporal_stride": 4,
    "random_resize_scale": "(0.3, 1.0)",
    "batch_size": 3072,
    "iterations": 90000,
    "warmup_fraction": 0.15,
    "lr": 6.25e-4,
    "start_lr": 2e-4,
    "final_lr": 1e-6,
    "momentum": "0.998 -> 1.0",
    "weight_decay": "0.04 -> 0.4",
    "scheduler_scale_factor": 1.25,
    "patch_size": 16,
    "tubelet_size": 2,
    "pred_depth": 12,
    "pred_embed_dim": 384,
    "dtype": "bfloat16",
}

# Table 6: frozen evaluation (K400 column; SSv2 1 clip, IN1K batch 512 and AutoAugment).
TABLE6 = {
    "num_clips (K400 / SSv2)": "8 / 1",
    "num_frames": 16,
    "temporal_stride": 4,
    "horizontal_flip": True,
    "random_resize_scale": "(0.08, 1.0)",
    "batch_size": 256,
    "epochs": 20,
    "lr": 1e-3,
    "final_lr": 0,
    "weight_decay": 0.01,
    "probe heads": 12,
}

# Table 7: frozen detection (ViT-L/16 column).
TABLE7 = {
    "out_layers": "[18, 20, 22, 24]",
    "batch_size": 64,
    "epochs": 30,
    "lr": 1e-4,
    "weight_decay": 0.05,
    "warmup_epochs": 2,
    "warmup_lr": 1e-6,
    "min_lr": 1e-6,
}

# Table 8: finetuning (K400 column; SSv2: 32 frames, 20 epochs, lr 1e-4, 2 test segments).
TABLE8 = {
    "num_frames": 16,
    "sampling_rate": 4,
    "resolution": 384,
    "drop_path": 0.2,
    "head_drop_rate": 0.5,
    "batch_size": 64,
    "epochs": 35,
    "lr": 3e-4,
    "layer_decay": 0.8,
    "weight_decay": 0.05,
    "warmup_epochs": 5,
    "num_sample": 2,
    "auto_augment": "rand-m7-n4-mstd0.5-inc1",
    "color_jitter": 0.4,
    "reprob": 0.25,
    "mixup": 0.8,
    "cutmix": 1.0,
    "mixup_prob": 1.0,
    "smoothing": 0.1,
    "test_num_segment": 5,
    "test_num_crop": 3,
}
