"""A small training run driven by the engine tests in a subprocess (resume after kill, DDP equality).

Usage: python train_script.py OUT_DIR [--resume] [--slow] [--dropout P] [--device D]
(``--device`` defaults to cpu: the DDP test runs two gloo processes; the resume test trains on the GPU when
there is one.)
Writes OUT_DIR/final.safetensors with the trained weights.
"""

import sys
import time

import torch

from damokit.engine import TrainConfig, fit, save_checkpoint


def main() -> None:
    out_dir = sys.argv[1]
    slow = "--slow" in sys.argv
    dropout = float(sys.argv[sys.argv.index("--dropout") + 1]) if "--dropout" in sys.argv else 0.0
    device = sys.argv[sys.argv.index("--device") + 1] if "--device" in sys.argv else "cpu"
    torch.set_num_threads(1)
    gen = torch.Generator().manual_seed(123)
    x = torch.randn(96, 4, generator=gen)
    y = (x @ torch.tensor([[1.0], [-2.0], [0.5], [3.0]])).tanh()
    torch.manual_seed(7)
    model = torch.nn.Sequential(
        torch.nn.Linear(4, 16), torch.nn.Dropout(dropout), torch.nn.ReLU(), torch.nn.Linear(16, 1)
    )

    def loss_fn(m, batch):
        if slow:
            time.sleep(0.05)
        return ((m(batch[0]) - batch[1]) ** 2).mean()

    config = TrainConfig(
        epochs=6,
        batch_size=16,
        lr=1e-2,
        schedule="cosine",
        warmup_steps=3,
        checkpoint_every=2,
        seed=3,
        progress=False,
        device=device,
    )
    fit(
        model,
        (x, y),
        loss_fn=loss_fn,
        config=config,
        val_set=(x[:32], y[:32]),
        out_dir=out_dir,
        resume="--resume" in sys.argv,
    )
    import torch.distributed as dist

    if not (dist.is_initialized() and dist.get_rank() != 0):
        save_checkpoint(f"{out_dir}/final.safetensors", {"model": model.state_dict()})


if __name__ == "__main__":
    main()
