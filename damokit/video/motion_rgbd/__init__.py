"""MotionRGBD: decoupled spatial/temporal networks, recoupling (RCM) and CAPF cross-modal fusion.

Paper: arXiv 2112.09129 (CVPR 2022); official code github.com/damo-cv/MotionRGBD. Spec: motion_rgbd.md.
"""

from damokit.video.motion_rgbd.c3d import C3DBaseline
from damokit.video.motion_rgbd.capf import CAPFOutput, CAPFusion, capf_loss, capf_predict, late_fusion
from damokit.video.motion_rgbd.dsn import InceptionDSN, MiniDSN
from damokit.video.motion_rgbd.dtn import KNNAttention, MultiScaleTemporalTransformer
from damokit.video.motion_rgbd.frp import FRPBlock, motion_attention_maps
from damokit.video.motion_rgbd.model import MotionBackbone, MotionOutput, MotionRGBDNet, motion_loss
from damokit.video.motion_rgbd.rcm import RecouplingModule, recoupling_distill_loss
from damokit.video.motion_rgbd.sampling import segment_bounds, segment_indices

__all__ = [
    "C3DBaseline", "CAPFOutput", "CAPFusion", "capf_loss", "capf_predict", "late_fusion", "InceptionDSN",
    "MiniDSN", "KNNAttention", "MultiScaleTemporalTransformer", "FRPBlock", "motion_attention_maps",
    "MotionBackbone", "MotionOutput", "MotionRGBDNet", "motion_loss", "RecouplingModule",
    "recoupling_distill_loss", "segment_bounds", "segment_indices",
]  # fmt: skip
