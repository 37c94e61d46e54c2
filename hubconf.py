"""torch.hub entry points: torch.hub.load(<this checkout>, "vjepa_vitl16", checkpoint=..., source="local").

Encoders: vjepa_vitl16, vjepa_vith16, vjepa_vith16_384 (the released sizes; without `checkpoint`
the released file is looked up under vjepa.hub.checkpoint_dir(), download=True fetches it) and
vjepa_tiny (the default CPU profile's model; a checkpoint of ours). V-JEPA 2 (3D RoPE): vjepa2_vitl,
vjepa2_vith, vjepa2_vitg, vjepa2_vitg_384. vjepa_encoder: any checkpoint of ours, at the shape it
records; vjepa_processor: its preprocessing (video file or clip -> input). vjepa_classifier: a probe
on its encoder, returning class probabilities. Every file is loaded with weights_only=True, strictly.
"""

dependencies = ["torch", "numpy", "timm"]

from vjepa.hub import (
    vjepa2_vitg,
    vjepa2_vitg_384,
    vjepa2_vith,
    vjepa2_vitl,  # noqa: E402,F401
    vjepa_classifier,
    vjepa_encoder,
    vjepa_processor,
    vjepa_tiny,
    vjepa_vith16,
    vjepa_vith16_384,
    vjepa_vitl16,
)
