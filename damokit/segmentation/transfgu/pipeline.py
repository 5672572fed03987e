"""The TransFGU pipeline on a frozen ViT: concepts -> CAM pseudo labels -> bootstrapped decoder (spec §3-6).

Paper: "TransFGU: A Top-down Approach to Fine-Grained Unsupervised Semantic Segmentation", ECCV 2022,
arXiv 2112.01515. Official code: github.com/damo-cv/TransFGU.

Deviations:
    * Training views are cut with one affine ``grid_sample`` for image and pseudo label (bilinear) instead of
      torchvision crops + RoIAlign (average, aligned); the same box reaches both.
    * The training views skip the GaussianBlur(3, sigma in [1, 2], p = 0.2) of the official transform (a
      3-tap blur barely changes 32 px views; damokit's DINO blur uses a wider kernel).
    * A step whose loss is <= 0 is zeroed instead of skipped (Adam's moments still move the weights).
    * Every gradient element is clamped to [-1, 1] by parameter hooks, as the official code clamps.
    * Each bootstrapping round (between teacher updates) is one ``engine.fit`` run that starts the student
      from its initial weights, which is the official "student reboot".
"""

from __future__ import annotations

import copy
import dataclasses
import os
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from damokit.engine import (
    TrainConfig,
    build_optimizer,
    fit,
    load_checkpoint,
    load_weights,
    module_device,
    save_checkpoint,
)
from damokit.engine.distributed import device_for
from damokit.nn.dino import color_jitter, dino_param_groups
from damokit.nn.vit import VisionTransformer
from damokit.segmentation.transfgu.backbone import normalise
from damokit.segmentation.transfgu.bootstrap import BootstrapSchedule
from damokit.segmentation.transfgu.cam import gradient_cam
from damokit.segmentation.transfgu.concepts import crop_cls_bank, discover_concepts
from damokit.segmentation.transfgu.decoder import MaskTransformerDecoder
from damokit.segmentation.transfgu.losses import make_targets, negative_weight, normalise_pseudo_labels, transfgu_losses

__all__ = ["TransFGUConfig", "PRESETS", "TransFGU", "patch_kmeans", "pixel_kmeans"]


@dataclass(frozen=True)
class TransFGUConfig:
    """Settings of the pipeline (the backbone is passed in, frozen)."""

    n_things: int = 4
    """K_things: foreground concepts (oracle K: the number of thing classes)."""
    n_stuff: int = 0
    """K_stuff: background concepts; 0 selects the things-only variant with a background channel."""
    window_scales: tuple[float, ...] = (0.5, 0.75)
    """Crop sides as fractions of the patch grid (official COCO: 0.5, 0.4, 0.3, 0.2 on an 80 x 80 grid)."""
    fg_min: float = 0.5
    bg_min: float = 0.8
    crop_size: int = 32
    """Working size the crops and images are resized to (official 320)."""
    train_size: int = 32
    """Side of the training views (official: half the working size, 160)."""
    crop_scales: tuple[float, ...] = (0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
    epochs: int = 12
    bootstrap_start: int = 4
    bootstrap_intervals: tuple[int, ...] = (2,)
    lr: float = 1e-3
    """Adam on the decoder (official 1e-4 at batch 256 for 200 epochs; the miniature trains 12 epochs)."""
    weight_decay: float = 5e-4
    batch_size: int = 32
    decoder_dim: int = 64
    decoder_depth: int = 2
    decoder_heads: int = 4
    seed: int = 0

    @property
    def things_only(self) -> bool:
        return self.n_stuff == 0

    @property
    def n_cls(self) -> int:
        return self.n_things + 1 if self.things_only else self.n_things + self.n_stuff


PRESETS = {
    "smoke": TransFGUConfig(
        epochs=2,
        bootstrap_start=1,
        bootstrap_intervals=(1,),
        batch_size=8,
        decoder_dim=16,
        decoder_heads=2,
        train_size=16,
        crop_size=16,
    ),
    "mini": TransFGUConfig(),
    "coco27": TransFGUConfig(
        n_things=12,
        n_stuff=15,
        window_scales=(0.5, 0.4, 0.3, 0.2),
        crop_size=320,
        train_size=160,
        epochs=200,
        bootstrap_start=2,
        bootstrap_intervals=(2,),
        lr=1e-4,
        batch_size=256,
        decoder_dim=384,
        decoder_heads=6,
    ),
}


class TransFGU:
    """Top-down unsupervised segmentation around a frozen ViT.

    Example:
        >>> from damokit.segmentation.transfgu.backbone import transfgu_vit_tiny
        >>> seg = TransFGU(transfgu_vit_tiny(), PRESETS["smoke"])
        >>> images = torch.rand(8, 3, 16, 16)
        >>> seg.fit(images).predict(images).shape
        torch.Size([8, 16, 16])
    """

    def __init__(self, backbone: VisionTransformer, config: TransFGUConfig = TransFGUConfig()):
        self.backbone = backbone.eval().requires_grad_(False)
        self.config = config
        self.prototypes: torch.Tensor | None = None
        self.decoder: MaskTransformerDecoder | None = None

    def _check(self, images: torch.Tensor) -> None:
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be (N, 3, H, W) RGB in [0, 1], got {tuple(images.shape)}")
        if images.shape[-1] != self.config.crop_size or images.shape[-2] != self.config.crop_size:
            raise ValueError(
                f"images must be resized to the working size {self.config.crop_size}, got {tuple(images.shape[-2:])}"
            )
        if not torch.isfinite(images).all():
            raise ValueError("images contain NaN or inf")

    def discover(self, images: torch.Tensor) -> torch.Tensor:
        """Stages 1-2: [CLS] bank of foreground (and background) crops, k-means prototypes (K, D)."""
        c = self.config
        fg, bg = crop_cls_bank(
            self.backbone,
            normalise(images),
            scales=c.window_scales,
            crop_size=c.crop_size,
            fg_min=c.fg_min,
            bg_min=None if c.things_only else c.bg_min,
        )
        protos = [discover_concepts(fg, c.n_things, seed=c.seed)]
        if not c.things_only:
            protos.append(discover_concepts(bg, c.n_stuff, seed=c.seed))
        self.prototypes = torch.cat(protos)
        return self.prototypes

    def pseudo_labels(self, images: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
        """Stage 3: gradient-CAM pseudo labels (N, K, h, w), computed once per image."""
        if self.prototypes is None:
            raise ValueError("call discover() (or fit()) before pseudo_labels()")
        return torch.cat([gradient_cam(self.backbone, normalise(x), self.prototypes) for x in images.split(batch_size)])

    @torch.no_grad()
    def _tokens(self, images: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        tokens = self.backbone.forward_features(normalise(images))[:, 1:]
        p = self.backbone.patch_size
        return tokens, (images.shape[-2] // p, images.shape[-1] // p)

    def _views(self, images: torch.Tensor, p_hat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Random square crops (side s in crop_scales) + flips + colour, same box for image and pseudo label."""
        c = self.config
        n = len(images)
        scales = torch.tensor(c.crop_scales)[torch.randint(len(c.crop_scales), (n,))]
        centre = (torch.rand(n, 2) * 2 - 1) * (1 - scales[:, None])  # box inside the image
        flip = torch.where(torch.rand(n) < 0.5, -1.0, 1.0)
        theta = torch.zeros(n, 2, 3)
        theta[:, 0, 0], theta[:, 1, 1] = scales * flip, scales
        theta[:, :, 2] = centre
        theta = theta.to(images.device)  # boxes drawn on the CPU generator, the same on every device
        size = (c.train_size, c.train_size)
        grid_img = F.affine_grid(theta, (n, 3, *size), align_corners=False)
        views = F.grid_sample(images, grid_img, mode="bilinear", align_corners=False)
        views = color_jitter(views, (0.8, 0.8, 0.8, 0.2), p=0.3)
        grey = (torch.rand(n) < 0.2).to(images.device)
        views[grey] = views[grey].mean(dim=1, keepdim=True).expand(-1, 3, -1, -1)
        p = self.backbone.patch_size
        grid_lbl = F.affine_grid(theta, (n, p_hat.shape[1], size[0] // p, size[1] // p), align_corners=False)
        return views, F.grid_sample(p_hat, grid_lbl, mode="bilinear", align_corners=False)

    def _new_decoder(self) -> MaskTransformerDecoder:
        c = self.config
        return MaskTransformerDecoder(
            in_dim=self.backbone.embed_dim,
            n_cls=c.n_cls,
            dim=c.decoder_dim,
            depth=c.decoder_depth,
            heads=c.decoder_heads,
        )

    def train(
        self, images: torch.Tensor, pseudo: torch.Tensor, *, progress: bool | None = None
    ) -> MaskTransformerDecoder:
        """Stage 4: train the decoder on the pseudo labels with teacher-student bootstrapping."""
        c = self.config
        torch.manual_seed(c.seed)
        initial = self._new_decoder()
        p_hat_all = normalise_pseudo_labels(pseudo, c.things_only)
        schedule = BootstrapSchedule(c.bootstrap_start, c.bootstrap_intervals)
        bounds = [0, *schedule.update_epochs(c.epochs), c.epochs]
        teacher: MaskTransformerDecoder | None = None
        student = copy.deepcopy(initial)  # ``initial`` itself is never trained: every reboot copies it
        for round_start, round_end in zip(bounds[:-1], bounds[1:]):
            if round_start > 0:  # teacher update: the student becomes the teacher and reboots
                teacher = copy.deepcopy(student).eval().requires_grad_(False)
                student = copy.deepcopy(initial)
            self._train_round(student, teacher, images, p_hat_all, round_end - round_start, progress)
        self.decoder = student.eval()
        return self.decoder

    def _train_round(self, student, teacher, images, p_hat_all, epochs, progress) -> None:
        c = self.config
        for param in student.parameters():
            param.register_hook(lambda g: g.clamp(-1.0, 1.0))
        steps_per_epoch = max(1, len(images) // c.batch_size)
        state = {"step": 0}

        def loss_fn(model: nn.Module, batch) -> tuple[torch.Tensor, dict[str, float]]:
            x, p_hat = batch
            views, p_view = self._views(x, p_hat)
            tokens, grid = self._tokens(views)
            logits, class_emb = (model.module if hasattr(model, "module") else model).forward_with_embeddings(
                tokens, grid
            )
            teacher_logits = teacher(tokens, grid) if teacher is not None else None
            target, negative = make_targets(p_view, teacher_logits)
            alpha = negative_weight(state["step"] // steps_per_epoch)
            loss, parts = transfgu_losses(
                logits, class_emb, target, negative, alpha, things_only=c.things_only, p_hat=p_view
            )
            return (loss if loss.item() > 0 else loss * 0.0), parts

        config = TrainConfig(
            epochs=epochs,
            batch_size=min(c.batch_size, len(images)),
            lr=c.lr,
            optimizer="adam",
            weight_decay=c.weight_decay,
            seed=c.seed,
            progress=progress,
        )
        # official: weight decay on the decoder's weights, none on biases and norms
        optimizer = build_optimizer("adam", dino_param_groups(student, c.weight_decay), c.lr)
        # the frozen backbone and the teacher run beside the student on fit's device; the backbone goes home after
        home, device = module_device(self.backbone), device_for(config.device)
        for frozen in (self.backbone, teacher):
            if frozen is not None:
                frozen.to(device)
        try:
            fit(
                student,
                (images, p_hat_all),
                loss_fn=loss_fn,
                config=config,
                optimizer=optimizer,
                after_step=lambda m, s: state.update(step=s + 1),
                run_config={"transfgu": dataclasses.asdict(c)},
            )
        finally:
            self.backbone.to(home)

    def fit(self, images: torch.Tensor, *, progress: bool | None = None) -> TransFGU:
        """All stages on unlabeled images (N, 3, S, S) in [0, 1] at the working size S."""
        self._check(images)
        self.discover(images)
        self.train(images, self.pseudo_labels(images), progress=progress)
        return self

    @torch.no_grad()
    def predict_logits(self, images: torch.Tensor) -> torch.Tensor:
        """Decoder logits bilinearly upsampled to the image size (N, n_cls, H, W)."""
        if self.decoder is None:
            raise ValueError("call fit() (or train()) before predicting")
        self._check(images)
        outs = []
        for x in images.split(64):
            tokens, grid = self._tokens(x)
            outs.append(F.interpolate(self.decoder(tokens, grid), size=x.shape[-2:], mode="bilinear"))
        return torch.cat(outs)

    def predict(self, images: torch.Tensor) -> torch.Tensor:
        """Label maps (N, H, W); things-only: 0 is background."""
        return self.predict_logits(images).argmax(dim=1)

    def save(self, path: str | os.PathLike) -> None:
        """Prototypes, decoder weights (once trained) and config, via ``damokit.engine.save_checkpoint``."""
        if self.prototypes is None:
            raise ValueError("nothing to save: call discover() or fit() first")
        state = {"prototypes": self.prototypes, "config": dataclasses.asdict(self.config)}
        if self.decoder is not None:
            state["decoder"] = self.decoder.state_dict()
        save_checkpoint(path, state)

    @classmethod
    def load(cls, path: str | os.PathLike, backbone: VisionTransformer) -> TransFGU:
        """The inverse of ``save`` around a (separately loaded) frozen backbone."""
        state = load_checkpoint(path)
        fields = {f.name for f in dataclasses.fields(TransFGUConfig)}
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in state["config"].items() if k in fields}
        seg = cls(backbone, TransFGUConfig(**values))
        seg.prototypes = state["prototypes"]
        if seg.prototypes.shape[1] != backbone.embed_dim:
            raise ValueError(
                f"{path} holds {seg.prototypes.shape[1]}-d prototypes but the backbone is {backbone.embed_dim}-d; "
                "load the backbone they were discovered with"
            )
        if "decoder" in state:
            seg.decoder = seg._new_decoder()
            load_weights(seg.decoder, state["decoder"], source=str(path))
            seg.decoder.eval()
        return seg


def _kmeans_labels(train: torch.Tensor, test: torch.Tensor, k: int, seed: int) -> torch.Tensor:
    from sklearn.cluster import KMeans

    km = KMeans(n_clusters=k, n_init=3, random_state=seed).fit(train.numpy())
    return torch.from_numpy(km.predict(test.numpy())).long()


@torch.no_grad()
def patch_kmeans(vit: VisionTransformer, train: torch.Tensor, test: torch.Tensor, k: int, *, seed: int = 0):
    """Bottom-up baseline A: k-means on l2-normalised last-layer patch tokens; nearest-upsampled labels (N, H, W)."""
    vit.eval()
    p = vit.patch_size

    def tokens(images: torch.Tensor) -> torch.Tensor:
        feats = torch.cat([vit.forward_features(normalise(x))[:, 1:] for x in images.split(128)])
        return F.normalize(feats, dim=-1)  # (N, h*w, D)

    test_tokens = tokens(test)
    labels = _kmeans_labels(tokens(train).flatten(0, 1), test_tokens.flatten(0, 1), k, seed)
    h, w = test.shape[-2] // p, test.shape[-1] // p
    grid = labels.view(len(test), 1, h, w).float()
    return F.interpolate(grid, size=test.shape[-2:], mode="nearest")[:, 0].long()


def pixel_kmeans(train: torch.Tensor, test: torch.Tensor, k: int, *, seed: int = 0, sample: int = 50_000):
    """Bottom-up baseline B: k-means on raw RGB pixels (fitted on a sample of training pixels). -> (N, H, W)."""
    pixels = train.permute(0, 2, 3, 1).reshape(-1, 3)
    pick = torch.randperm(len(pixels), generator=torch.Generator().manual_seed(seed))[:sample]
    labels = _kmeans_labels(pixels[pick], test.permute(0, 2, 3, 1).reshape(-1, 3), k, seed)
    return labels.view(len(test), *test.shape[-2:])
