# bench_cells.py — the PyTorch-eager side of `personalive bench compare`'s stage-1 step and streaming
# chunk (Sources/personalive/BenchComparePersonaLive.swift is ours): the networks of personalive_peer.py
# built from the same config sections, loaded strictly with *our* weights, fed our inputs, and stepped
# as train_stage1.py (+ accelerate's clipping and torch.optim.AdamW) and src/wrapper.py do.
# Cells(spec).hello() gives the parity values the Swift side checks before timing; Cells.step(kind)
# returns the zero-argument step that the peer times.
import copy
import fnmatch
import os

import torch
from safetensors.torch import load_file

import personalive_peer as pp


def _load(module, path):
    """Strict: every key and shape of ours must be one of the module's, and the other way round."""
    state = load_file(path)
    missing, unexpected = module.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValueError(f"{os.path.basename(path)} does not fit the PyTorch module: missing {missing[:5]}"
                         f"{'…' if len(missing) > 5 else ''}, unexpected {unexpected[:5]}{'…' if len(unexpected) > 5 else ''}")


def _count(*modules):
    return sum(p.numel() for m in modules for p in m.parameters())


class Cells:
    def __init__(self, spec):
        d = spec["dir"]
        io = load_file(os.path.join(d, "inputs.safetensors"))
        self.io = io

        # Stage 1: denoiser (motion modules, no temporal modules), reference UNet, step settings.
        self.denoiser = pp.UNet3DConditionModel(spec["denoising_unet"])
        self.reference = pp.build_reference_unet(spec["reference_unet"])
        _load(self.denoiser, os.path.join(d, "stage1_denoising_unet.safetensors"))
        _load(self.reference, os.path.join(d, "stage1_reference_unet.safetensors"))
        for name, p in self.reference.named_parameters():
            if any(fnmatch.fnmatchcase(name, pattern) for pattern in spec["reference_frozen"]):
                p.requires_grad_(False)
        self.denoiser.train()
        self.reference.train()
        self.control = pp.ReferenceAttentionControl(self.reference, self.denoiser, fusion_blocks="full")
        self.alphas = pp.DDIMHelper(**spec["scheduler"]).alphas_cumprod
        self.settings = dict(noise_offset=spec["noise_offset"], bank_drop_ratio=spec["bank_drop_ratio"],
                             snr_gamma=spec["snr_gamma"], loss_weights=tuple(spec["loss_weights"]))
        self.inputs = {"ref_latent": io["reference_latent"], "tgt_latent": io["target_latent"],
                       "clip_embeds": io["clip"], "pose_fea": io["pose_features"], "motion": io["motion"],
                       "face_mask": io["face_mask"], "local_mask": io["local_mask"]}
        self.draws = {"noise": io["noise"], "noise_offset_randn": io["noise_offset"], "timesteps": io["timesteps"],
                      "bank_rand": None, "uncond": False, "drop_pose": False, "drop_motion": False}
        self.params = [p for m in (self.denoiser, self.reference) for p in m.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(self.params, lr=spec["lr"], betas=tuple(spec["betas"]), eps=spec["eps"],
                                           weight_decay=spec["weight_decay"], fused=spec["fused"] or None)
        self.max_grad_norm = spec["max_grad_norm"]

        # The streaming chunk: the same networks with temporal modules (the stage-3 model), the
        # reference banks written once, as the stream's start does.
        stream_config = copy.deepcopy(spec["denoising_unet"])
        stream_config["use_temporal_module"] = True
        self.stream_denoiser = pp.UNet3DConditionModel(stream_config)
        self.stream_reference = pp.build_reference_unet(spec["reference_unet"])
        _load(self.stream_denoiser, os.path.join(d, "stream_denoising_unet.safetensors"))
        _load(self.stream_reference, os.path.join(d, "stream_reference_unet.safetensors"))
        self.stream_denoiser.eval()
        self.stream_reference.eval()
        self.stream_control = pp.ReferenceAttentionControl(self.stream_reference, self.stream_denoiser,
                                                           fusion_blocks="full")
        with torch.no_grad():
            self.stream_control.clear()
            self.stream_control.write(io["window_reference_latent"], io["window_clip"])
            self.stream_control.update()
            self.stream_control.clear_writer()

    def _stage1_forward(self, bank_drop=True):
        settings = self.settings if bank_drop else dict(self.settings, bank_drop_ratio=0.0)
        return pp.stage1_step(self.denoiser, self.reference, self.control, self.alphas, self.inputs, self.draws,
                              **settings)

    def stage1_step(self):
        """One training iteration on the cached batch: forward, backward, clipping, AdamW."""
        self.optimizer.zero_grad(set_to_none=True)
        out = self._stage1_forward()
        out["loss"].backward()
        torch.nn.utils.clip_grad_norm_(self.params, self.max_grad_norm)
        self.optimizer.step()

    def window_pass(self):
        io = self.io
        return pp.window_pass(self.stream_denoiser, self.stream_control, io["window_latents"], io["window_timesteps"],
                              io["window_clip"], io["window_motion"], io["window_pose"])

    def hello(self):
        # Compared without the bank token drop, whose random draws come from each side's own generator.
        with torch.no_grad():
            loss = self._stage1_forward(bank_drop=False)["loss"].item()
        window_diff = (self.window_pass() - self.io["window_out"]).abs().max().item()
        return {"stage1_loss": loss, "window_max_abs_diff": window_diff,
                "stage1_parameters": _count(self.denoiser, self.reference),
                "stream_parameters": _count(self.stream_denoiser, self.stream_reference)}

    def step(self, kind):
        return {"stage1": self.stage1_step, "window": self.window_pass}[kind]
