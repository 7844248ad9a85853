"""Class-conditional inpainting GAN: a small U-Net generator (input: noise, mask, masked crop, and a class
embedding broadcast over the crop) and a PatchGAN discriminator with a per-patch class projection.
Hinge loss plus an L1 term inside the hole; the same pretrain-then-adapt scheme and sampling as the
diffusion generator (defectsynth/synth/inpaint.py)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from defectsynth.synth.inpaint import InpaintGenerator
from defectsynth.synth.inpaint_data import inpaint_input
from defectsynth.synth.registry import register_generator

_COMMON = {"replay": 0.25, "ema_decay": 0.999, "l1_weight": 10.0, "embed": 8, "amp": False}
PRESETS = {
    "tiny": {**_COMMON, "image_size": 64, "crop": 16, "width": 8, "depth": 2, "batch": 4, "lr": 1e-3,
             "pretrain_steps": 4, "adapt_steps": 3, "sample_batch": 8},
    "cpu": {**_COMMON, "image_size": 256, "crop": 48, "width": 24, "depth": 3, "batch": 16, "lr": 2e-4,
            "pretrain_steps": 900, "adapt_steps": 500, "sample_batch": 100},
    "gpu": {**_COMMON, "image_size": 512, "crop": 128, "width": 64, "depth": 4, "batch": 64, "lr": 2e-4,
            "pretrain_steps": 30000, "adapt_steps": 8000, "sample_batch": 100, "amp": True},
}


def _block(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1), nn.GroupNorm(min(8, cout), cout), nn.SiLU())


class UNetGenerator(nn.Module):
    def __init__(self, channels: int, num_classes: int, width: int, depth: int, embed: int):
        super().__init__()
        self.embed = nn.Embedding(num_classes, embed)
        widths = [width * 2**i for i in range(depth + 1)]
        self.stem = _block(2 * channels + 1 + embed, widths[0], 1)
        self.down = nn.ModuleList(_block(widths[i], widths[i + 1], 2) for i in range(depth))
        self.up = nn.ModuleList(_block(widths[i + 1] + widths[i], widths[i], 1) for i in reversed(range(depth)))
        self.out = nn.Conv2d(widths[0], channels, 3, 1, 1)

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        e = self.embed(labels)[:, :, None, None].expand(-1, -1, *x.shape[2:])
        h = self.stem(torch.cat([x, e], 1))
        skips = []
        for down in self.down:
            skips.append(h)
            h = down(h)
        for up in self.up:
            skip = skips.pop()
            h = up(torch.cat([F.interpolate(h, size=skip.shape[2:], mode="nearest"), skip], 1))
        return torch.tanh(self.out(h))


class PatchDiscriminator(nn.Module):
    """Real/fake per patch, conditioned by projection: logit + <class embedding, patch features>."""

    def __init__(self, channels: int, num_classes: int, width: int, depth: int):
        super().__init__()
        layers, cin = [], channels + 1
        for i in range(depth):
            cout = width * 2**i
            layers += [nn.utils.spectral_norm(nn.Conv2d(cin, cout, 4, 2, 1)), nn.LeakyReLU(0.2)]
            cin = cout
        self.features = nn.Sequential(*layers)
        self.logit = nn.utils.spectral_norm(nn.Conv2d(cin, 1, 3, 1, 1))
        self.embed = nn.Embedding(num_classes, cin)

    def forward(self, image: torch.Tensor, mask: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        h = self.features(torch.cat([image, mask], 1))
        return self.logit(h) + (h * self.embed(labels)[:, :, None, None]).sum(1, keepdim=True)


@register_generator("gan")
class InpaintGAN(InpaintGenerator):
    presets = PRESETS
    sample_settings = ("width", "depth")

    def build(self) -> None:
        s, c, k = self.settings, self.channels, len(self.classes) + 1
        self.generator = UNetGenerator(c, k, s["width"], s["depth"], s["embed"]).to(self.device)
        self.discriminator = PatchDiscriminator(c, k, s["width"], s["depth"]).to(self.device)
        self.opt_g = torch.optim.Adam(self.generator.parameters(), lr=s["lr"], betas=(0.5, 0.999))
        self.opt_d = torch.optim.Adam(self.discriminator.parameters(), lr=s["lr"], betas=(0.5, 0.999))

    def ema_module(self) -> nn.Module:
        return self.generator

    def _fill(self, known: torch.Tensor, mask: torch.Tensor, labels: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        out = self.generator(inpaint_input(noise, mask, known), labels)
        return known * (1 - mask) + out * mask

    def train_step(self, x0: torch.Tensor, mask: torch.Tensor, labels: torch.Tensor) -> float:
        self.generator.train()
        noise = torch.randn(x0.shape, generator=self.torch_rng, device=self.device)
        with self.autocast():
            fake = self._fill(x0, mask, labels, noise)
            d_loss = (F.relu(1 - self.discriminator(x0, mask, labels)).mean()
                      + F.relu(1 + self.discriminator(fake.detach(), mask, labels)).mean())
        self.opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        self.opt_d.step()
        with self.autocast():
            adv = -self.discriminator(fake, mask, labels).mean()
            l1 = ((fake - x0).abs() * mask).sum() / (mask.sum() * x0.shape[1] + 1)
            g_loss = adv + self.settings["l1_weight"] * l1
        self.opt_g.zero_grad(set_to_none=True)
        g_loss.backward()
        self.opt_g.step()
        return g_loss.item()

    def inpaint(self, known: torch.Tensor, mask: torch.Tensor, labels: torch.Tensor,
                noise: torch.Tensor) -> torch.Tensor:
        return self._fill(known, mask, labels, noise)
