"""TransFGU: top-down unsupervised semantic segmentation (arXiv 2112.01515; github.com/damo-cv/TransFGU)."""

from damokit.segmentation.transfgu.bootstrap import BootstrapSchedule
from damokit.segmentation.transfgu.cam import gradient_cam, keep_top_mass
from damokit.segmentation.transfgu.concepts import crop_cls_bank, discover_concepts, foreground_mask, sliding_windows
from damokit.segmentation.transfgu.decoder import MaskTransformerDecoder
from damokit.segmentation.transfgu.dino_loader import load_dino_vit
from damokit.segmentation.transfgu.pipeline import PRESETS, TransFGU, TransFGUConfig, patch_kmeans, pixel_kmeans

__all__ = [
    "BootstrapSchedule",
    "gradient_cam",
    "keep_top_mass",
    "crop_cls_bank",
    "discover_concepts",
    "foreground_mask",
    "sliding_windows",
    "MaskTransformerDecoder",
    "load_dino_vit",
    "PRESETS",
    "TransFGU",
    "TransFGUConfig",
    "patch_kmeans",
    "pixel_kmeans",
]
