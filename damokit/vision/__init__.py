"""Vision backbones: ELSA (enhanced local self-attention) and its Swin baseline."""

from damokit.vision.elsa import (
    ELSA,
    ELSA_METHODS,
    ELSABlock,
    ELSASwin,
    convert_official_elsa_swin,
    elsa_filter,
    load_official_elsa_swin,
)

__all__ = [
    "ELSA",
    "ELSA_METHODS",
    "ELSABlock",
    "ELSASwin",
    "convert_official_elsa_swin",
    "elsa_filter",
    "load_official_elsa_swin",
]
