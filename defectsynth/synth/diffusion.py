"""Class-conditional inpainting diffusion: a diffusers UNet2DModel with one class embedding per class
(good included, plus a null class for classifier-free guidance), whose input channels are the noisy
crop, the mask and the masked crop. Trained with the DDPM schedule; sampled with DDIM in our own loop over
scheduler.timesteps, since diffusers pipelines pass no class labels."""

from __future__ import annotations

import torch
from diffusers import DDIMScheduler, DDPMScheduler, UNet2DModel

from defectsynth.synth.inpaint import InpaintGenerator
from defectsynth.synth.inpaint_data import inpaint_input
from defectsynth.synth.registry import register_generator

_COMMON = {"replay": 0.25, "class_dropout": 0.1, "ema_decay": 0.999, "guidance": 2.0,
           "hole_weight": 0.9, "amp": False}
PRESETS = {
    # seconds, for tests
    "tiny": {**_COMMON, "image_size": 64, "crop": 16, "channels": [8, 16], "attention": False, "layers": 1,
             "batch": 4, "lr": 1e-3, "pretrain_steps": 4, "adapt_steps": 3, "steps": 3, "sample_batch": 8},
    # practical on 2 CPU cores (see bench/quality.py for measured wall times)
    "cpu": {**_COMMON, "image_size": 256, "crop": 48, "channels": [16, 32, 64], "attention": False,
            "layers": 1, "batch": 16, "lr": 5e-4, "pretrain_steps": 600, "adapt_steps": 400, "steps": 20,
            "sample_batch": 50},
    # quality, on a GPU with bf16 autocast
    "gpu": {**_COMMON, "image_size": 512, "crop": 128, "channels": [64, 128, 256, 256], "attention": True,
            "layers": 2, "batch": 64, "lr": 2e-4, "pretrain_steps": 20000, "adapt_steps": 6000, "steps": 50,
            "sample_batch": 100, "amp": True},
}


@register_generator("diffusion")
class Diffusion(InpaintGenerator):
    presets = PRESETS
    sample_settings = ("steps", "guidance")

    def build(self) -> None:
        s, c = self.settings, self.channels
        last = "AttnDownBlock2D" if s["attention"] else "DownBlock2D"
        self.unet = UNet2DModel(
            sample_size=s["crop"], in_channels=2 * c + 1, out_channels=c, block_out_channels=tuple(s["channels"]),
            layers_per_block=s["layers"], down_block_types=("DownBlock2D",) * (len(s["channels"]) - 1) + (last,),
            up_block_types=(last.replace("Down", "Up"),) + ("UpBlock2D",) * (len(s["channels"]) - 1),
            num_class_embeds=len(self.classes) + 1, norm_num_groups=min(8, s["channels"][0]),
        ).to(self.device)
        self.noise_scheduler = DDPMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2")
        self.optimizer = torch.optim.AdamW(self.unet.parameters(), lr=s["lr"], weight_decay=0.0)

    def ema_module(self) -> torch.nn.Module:
        return self.unet

    def train_step(self, x0: torch.Tensor, mask: torch.Tensor, labels: torch.Tensor) -> float:
        self.unet.train()
        b, g = x0.shape[0], self.torch_rng
        noise = torch.randn(x0.shape, generator=g, device=self.device)
        t = torch.randint(0, self.noise_scheduler.config.num_train_timesteps, (b,), generator=g, device=self.device)
        noisy = self.noise_scheduler.add_noise(x0, noise, t)
        drop = torch.rand(b, generator=g, device=self.device) < self.settings["class_dropout"]
        labels = torch.where(drop, torch.full_like(labels, self.null_label), labels)
        with self.autocast():
            pred = self.unet(inpaint_input(noisy, mask, x0), t, class_labels=labels).sample
        # Only the hole is pasted back, so most of the loss is spent there.
        w = self.settings["hole_weight"] * mask + (1 - self.settings["hole_weight"]) * (1 - mask)
        loss = ((pred.float() - noise) ** 2 * w).sum() / (w.sum() * x0.shape[1])
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return loss.item()

    def inpaint(self, known: torch.Tensor, mask: torch.Tensor, labels: torch.Tensor,
                noise: torch.Tensor) -> torch.Tensor:
        scheduler = DDIMScheduler.from_config(self.noise_scheduler.config)
        scheduler.set_timesteps(self.settings["steps"], device=self.device)
        guidance = self.settings["guidance"]
        x = noise * scheduler.init_noise_sigma
        null = torch.full_like(labels, self.null_label)
        timesteps = scheduler.timesteps
        for i, t in enumerate(timesteps):
            inp = inpaint_input(scheduler.scale_model_input(x, t), mask, known)
            if guidance == 1.0:
                eps = self.unet(inp, t, class_labels=labels).sample
            else:
                cond, uncond = self.unet(torch.cat([inp, inp]), t, class_labels=torch.cat([labels, null])).sample.chunk(2)
                eps = uncond + guidance * (cond - uncond)
            x = scheduler.step(eps.float(), t, x).prev_sample
            # Outside the hole, the known crop noised to the next level replaces the model's estimate
            # (RePaint-style): a small model drifts there, and the drift spoils the context of the hole.
            known_t = scheduler.add_noise(known, noise, timesteps[i + 1:i + 2]) if i + 1 < len(timesteps) else known
            x = mask * x + (1 - mask) * known_t
        return x.clamp(-1, 1)
